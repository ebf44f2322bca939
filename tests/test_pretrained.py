"""The ImageNet EfficientNet-Lite0 the skin model starts from: read without PyTorch, and right."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")
matplotlib = pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from patchscan_train import pretrained  # noqa: E402

MILITARY_UNIFORM = 652  # ImageNet class of the portrait below (Grace Hopper in uniform)


def test_legacy_weight_file_reads_to_every_layer() -> None:
    state = pretrained.read_torch_legacy(pretrained.lite0_weights_file())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert sum(k.startswith("_blocks.") and k.endswith("_project_conv.weight") for k in state) == 16


def test_loaded_network_recognises_an_imagenet_photo() -> None:
    """A wrong layout (padding, stride, kernel transpose, scaling) would not find the uniform."""
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = Image.open(photo).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    features = pretrained.efficientnet_lite0((224, 224))(
        np.asarray(image, np.float32)[None] / 255.0
    )
    state = pretrained.read_torch_legacy(pretrained.lite0_weights_file())
    logits = np.asarray(features).mean(axis=(1, 2)) @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(np.argmax(logits)) == MILITARY_UNIFORM
