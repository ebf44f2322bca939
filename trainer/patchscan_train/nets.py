"""Architectures. Inputs are float32 RGB in [0, 1] (patchscan.imaging.to_model_input)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from patchscan_train import pretrained


def idc_cnn(size: tuple[int, int]) -> keras.Model:
    """A small CNN for 50x50 H&E patches, co-designed with the scan's speed budget and trained
    by distillation from a bigger one.

    A stride-2 3x3 convolution takes the patch to 25x25, a stride-2 depthwise-separable block to
    13x13, and depthwise-separable blocks widen the features cheaply. 1.3 M multiply-accumulates
    per patch: onnxruntime spends ~105 µs per patch on one core, against ~240 for the model it
    learns from (3.7 M, two full 3x3 convolutions: patchscan_train/teachers/idc-v7.keras), for the
    same test ROC AUC when it learns from that model's probabilities (train.Distilled).
    """
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = _conv(inputs, 16, strides=2, name="stem")  # 25x25
    x = _separable(x, 48, name="sep1", strides=2)  # 13x13
    x = _separable(x, 64, name="sep2")
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 6x6
    x = _separable(x, 128, name="sep3")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name="idc_cnn")


def mean_of(members: list[keras.Model]) -> keras.Model:
    """One network whose output is the mean of `members`' probabilities for the same input
    (each kept whole, as a nested model, so its layers keep their names and weights)."""
    shape = members[0].inputs[0].shape[1:]
    inputs = keras.Input(shape, name="image")
    outputs = [
        keras.Model(m.inputs[0], m.outputs[0], name=f"member{i + 1}")(inputs)
        for i, m in enumerate(members)
    ]
    mean = layers.Average(name="probability")(outputs)
    return keras.Model(inputs, mean, name=f"mean_of_{len(members)}")


# The skin model's ImageNet backbone and the first of its blocks it retrains: the last two
# stages and the 1x1 head (Lite0: blocks 11-15; Lite2: 15-20). Everything before keeps its
# ImageNet weights.
SKIN_BACKBONE = "lite2"  # Lite0: 0.894 validation / 0.872 test ROC AUC; Lite2: 0.897 / 0.876
SKIN_FIRST_TRAINED_BLOCK = {"lite0": 11, "lite2": 15}


def skin_efficientnet(size: tuple[int, int]) -> keras.Model:
    """Shades-of-grey colour constancy, then ImageNet EfficientNet-Lite2 (pretrained.py) with its
    last two stages fine-tuned for dermoscopy.

    Trained from scratch on 11k photos, a CNN learns the collection's look (camera, lighting)
    more than lesions: 0.78 ROC AUC on unseen lesions. Frozen ImageNet features reach 0.85;
    retraining the last stage's convolutions on top adapts the high-level features while the
    generic low-level ones stay as they are, and costs a third of a full fine-tune per step on a
    CPU (no gradients below the first block trained). Batch norms stay frozen: their ImageNet
    statistics are better than those of small batches.
    """
    backbone = pretrained.efficientnet_lite(SKIN_BACKBONE, size)
    first = backbone.get_layer(f"_blocks.{SKIN_FIRST_TRAINED_BLOCK[SKIN_BACKBONE]}._expand_conv")
    trained = False
    for layer in backbone.layers:
        trained = trained or layer is first
        layer.trainable = trained and not isinstance(layer, layers.BatchNormalization)
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = backbone(ShadesOfGrey(name="shades_of_grey")(inputs))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"skin_efficientnet_{SKIN_BACKBONE}")


DIHEDRAL_VIEWS = 8  # the identity, 3 rotations by 90 degrees and 4 mirror images


def averaged_over_dihedral_views(model: keras.Model) -> keras.Model:
    """`model` averaged over the 8 flips and right-angle rotations of each (square) image.

    A dermoscopy photo has no up and no left, so each view is as valid as the photo itself and
    their mean is steadier than any one of them. On the skin model's validation lesions it
    raised ROC AUC from 0.897 to 0.904 (2 flips: 0.899, 4: 0.902); it costs 8x the compute,
    which a folder of photos affords. The views go through the network as one batch, so the
    exported graph holds the network once.
    """
    inputs = keras.Input(model.input_shape[1:], name="image")
    probabilities = model(DihedralViews(name="dihedral_views")(inputs))
    outputs = ViewMean(DIHEDRAL_VIEWS, name="view_mean")(probabilities)
    return keras.Model(inputs, outputs, name=f"{model.name}_dihedral")


@keras.saving.register_keras_serializable(package="patchscan")
class DihedralViews(layers.Layer):
    """(N, S, S, C) → (8N, S, S, C): all N images in each of the 8 views, view after view."""

    def call(self, images: Any) -> Any:
        ops = keras.ops
        turned = ops.transpose(images, (0, 2, 1, 3))  # the mirror image in the main diagonal
        views = []
        for image in (images, turned):
            views += [image, ops.flip(image, 1), ops.flip(image, 2), ops.flip(image, (1, 2))]
        return ops.concatenate(views, axis=0)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        if input_shape[1] != input_shape[2]:
            raise ValueError(f"dihedral views need square images, not {input_shape[1:3]}")
        return input_shape


@keras.saving.register_keras_serializable(package="patchscan")
class ViewMean(layers.Layer):
    """(V·N, 1) probabilities, view after view → (N, 1), each image's mean over its V views."""

    def __init__(self, views: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.views = views

    def call(self, probabilities: Any) -> Any:
        ops = keras.ops
        return ops.mean(ops.reshape(probabilities, (self.views, -1, 1)), axis=0)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "views": self.views}


@keras.saving.register_keras_serializable(package="patchscan")
class ShadesOfGrey(layers.Layer):
    """Colour constancy (Finlayson & Trezzi 2004) as the model's first step, so the ONNX file
    carries it and the tool's preprocessing stays the same for every model.

    Each photo's illuminant is estimated as the Minkowski p-norm mean of each channel (p = 6:
    between grey-world's mean and max-RGB's maximum) and divided out. Dermatoscopes and cameras
    differ mostly in that cast; HAM10000 and ISIC 2017 look different for it, and the model
    should learn lesions, not collections (Barata et al. 2015 found it the best of the simple
    colour normalisations for dermoscopy).
    """

    def __init__(self, power: float = 6.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.power = power

    def call(self, images: Any) -> Any:
        ops = keras.ops
        # In float64: float32 means of 25,600 sixth powers differ between TensorFlow and
        # onnxruntime by 1e-5, which the network turned into 1e-4 in probability.
        wide = ops.cast(images, "float64")
        mean = ops.mean(ops.power(ops.maximum(wide, 1e-4), self.power), axis=(1, 2), keepdims=True)
        illuminant = ops.power(mean, 1.0 / self.power)
        norm = ops.sqrt(ops.sum(ops.square(illuminant), axis=-1, keepdims=True))
        gain = ops.cast(norm / (illuminant * np.sqrt(3.0) + 1e-6), images.dtype)
        return ops.clip(images * gain, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "power": self.power}


def _conv(x: keras.KerasTensor, width: int, strides: int, name: str) -> keras.KerasTensor:
    """3x3 conv, batch norm (which makes the conv's bias redundant), ReLU."""
    x = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _separable(x: keras.KerasTensor, width: int, name: str, strides: int = 1) -> keras.KerasTensor:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and ReLU (MobileNet v1 block)."""
    x = layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return layers.ReLU(name=f"{name}_pw_relu")(x)
