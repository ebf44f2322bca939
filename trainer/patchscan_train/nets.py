"""Architectures. Inputs are float32 RGB in [0, 1] (patchscan.imaging.to_model_input)."""

from __future__ import annotations

import keras
from keras import layers

from patchscan_train import pretrained


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


# The first EfficientNet-Lite0 block the skin model retrains: the last stage (blocks 11-15) and
# the 1x1 head. Everything before it keeps its ImageNet weights.
SKIN_FIRST_TRAINED_BLOCK = 11


def skin_efficientnet(size: tuple[int, int]) -> keras.Model:
    """ImageNet EfficientNet-Lite0 (pretrained.py) with its last stage fine-tuned for dermoscopy.

    Trained from scratch on 11k photos, a CNN learns the collection's look (camera, lighting)
    more than lesions: 0.78 ROC AUC on unseen lesions. Frozen ImageNet features reach 0.85;
    retraining the last stage's convolutions on top adapts the high-level features while the
    generic low-level ones stay as they are, and costs a third of a full fine-tune per step on a
    CPU (no gradients below block 11). Batch norms stay frozen: their ImageNet statistics are
    better than those of small batches.
    """
    backbone = pretrained.efficientnet_lite0(size)
    first = backbone.get_layer(f"_blocks.{SKIN_FIRST_TRAINED_BLOCK}._expand_conv")
    trained = False
    for layer in backbone.layers:
        trained = trained or layer is first
        layer.trainable = trained and not isinstance(layer, layers.BatchNormalization)
    x = layers.GlobalAveragePooling2D(name="gap")(backbone.output)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(backbone.input, outputs, name="skin_efficientnet_lite0")


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
