"""Architectures. Inputs are float32 RGB in [0, 1] (patchscan.imaging.to_model_input)."""

from __future__ import annotations

import keras
from keras import layers


def idc_cnn(size: tuple[int, int], widths: tuple[int, ...] = (16, 32, 64, 128)) -> keras.Model:
    """A small VGG-style CNN for 50x50 H&E patches, cheap enough for thousands of patches/s.

    Each block: 3x3 conv (bias folded into batch norm), ReLU, 2x2 max-pool; the last block's
    features are averaged over the patch, so the model does not learn where in the patch things sit.
    """
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = inputs
    for index, width in enumerate(widths):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
        if index < len(widths) - 1:
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name="idc_cnn")


def skin_cnn(
    size: tuple[int, int], widths: tuple[int, ...] = (32, 64, 96, 128, 192)
) -> keras.Model:
    """A plain CNN for dermoscopy photos (downsampled to `size`); same blocks as idc_cnn."""
    model = idc_cnn(size, widths)
    model.name = "skin_cnn"
    return model
