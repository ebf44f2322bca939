"""Architectures. Inputs are float32 RGB in [0, 1] (patchscan.imaging.to_model_input)."""

from __future__ import annotations

import keras
from keras import layers


def idc_cnn(size: tuple[int, int]) -> keras.Model:
    """A CNN for 50x50 H&E patches, co-designed with the scan's speed budget (issue 6).

    Two stride-2 3x3 convolutions take the patch to 13x13 (a 2x2 max-pool after a full-resolution
    conv cost 3x the MACs for the same receptive field), then depthwise-separable blocks widen the
    features cheaply. About 3.7 M multiply-accumulates per patch, a third of the first VGG-style
    model, so onnxruntime classifies ~9,000 patches/s on two cores instead of ~2,900.
    """
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = _conv(inputs, 24, strides=2, name="stem")  # 25x25
    x = _conv(x, 48, strides=2, name="conv1")  # 13x13
    x = _separable(x, 96, name="sep2")
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 6x6
    x = _separable(x, 192, name="sep3")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name="idc_cnn")


def skin_cnn(
    size: tuple[int, int], widths: tuple[int, ...] = (32, 64, 96, 128, 192)
) -> keras.Model:
    """A plain VGG-style CNN for dermoscopy photos downsampled to `size`.

    Each block: 3x3 conv, batch norm, ReLU, 2x2 max-pool; the last block's features are averaged,
    so the model does not learn where in the photo things sit.
    """
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = inputs
    for index, width in enumerate(widths):
        x = _conv(x, width, strides=1, name=f"conv{index}")
        if index < len(widths) - 1:
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name="skin_cnn")


def _conv(x: keras.KerasTensor, width: int, strides: int, name: str) -> keras.KerasTensor:
    """3x3 conv, batch norm (which makes the conv's bias redundant), ReLU."""
    x = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _separable(x: keras.KerasTensor, width: int, name: str) -> keras.KerasTensor:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and ReLU (MobileNet v1 block)."""
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return layers.ReLU(name=f"{name}_pw_relu")(x)
