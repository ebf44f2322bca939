"""The ImageNet EfficientNet-Lite networks the skin model starts from: read without PyTorch, and
right."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")
matplotlib = pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from patchscan_train import pretrained  # noqa: E402

MILITARY_UNIFORM = 652  # ImageNet class of the portrait below (Grace Hopper in uniform)
# Each variant's MBConv blocks and the input size it was trained at.
VARIANTS = [("lite0", 16, 224), ("lite2", 21, 260)]


@pytest.mark.parametrize(("variant", "blocks", "side"), VARIANTS)
def test_legacy_weight_file_reads_to_every_layer(variant: str, blocks: int, side: int) -> None:
    state = pretrained.read_torch_legacy(pretrained.weights_file(variant))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert sum(k.startswith("_blocks.") and k.endswith("_project_conv.weight") for k in state) == (
        blocks
    )


@pytest.mark.parametrize(("variant", "blocks", "side"), VARIANTS)
def test_loaded_network_recognises_an_imagenet_photo(variant: str, blocks: int, side: int) -> None:
    """A wrong layout (padding, stride, kernel transpose, scaling) would not find the uniform."""
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = Image.open(photo).convert("RGB")
    short = min(image.size)
    left, top = (image.width - short) // 2, (image.height - short) // 2
    image = image.crop((left, top, left + short, top + short)).resize((side, side), Image.BILINEAR)
    features = pretrained.efficientnet_lite(variant, (side, side))(
        np.asarray(image, np.float32)[None] / 255.0
    )
    state = pretrained.read_torch_legacy(pretrained.weights_file(variant))
    logits = np.asarray(features).mean(axis=(1, 2)) @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(np.argmax(logits)) == MILITARY_UNIFORM
