"""Training-time augmentation, in TensorFlow ops on float32 batches in [0, 1]."""

from __future__ import annotations

import math

import tensorflow as tf

# Ruifrok & Johnston's H&E(-DAB) stain vectors: RGB optical density = concentrations @ this.
_RGB_FROM_HED = tf.constant(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=tf.float32
)
_HED_FROM_RGB = tf.linalg.inv(_RGB_FROM_HED)


def dihedral(images: tf.Tensor) -> tf.Tensor:
    """A random one of the 8 flips/90° rotations per image: tissue has no up or left."""
    images = tf.map_fn(
        lambda image: tf.image.rot90(image, tf.random.uniform([], 0, 4, dtype=tf.int32)), images
    )
    return tf.image.random_flip_left_right(images)


def hed_jitter(images: tf.Tensor, scale: float = 0.2, shift: float = 0.05) -> tf.Tensor:
    """Stain augmentation (Tellez et al. 2018): scale and shift each stain's concentration.

    Slides from different labs and scanners differ mostly in how strong the H and E stains are;
    perturbing them in stain space teaches the model to look past that.
    """
    batch = tf.shape(images)[0]
    od = -tf.math.log(tf.clip_by_value(images, 1e-3, 1.0))
    hed = tf.einsum("bhwc,cd->bhwd", od, _HED_FROM_RGB)
    alpha = tf.random.uniform([batch, 1, 1, 3], 1 - scale, 1 + scale)
    beta = tf.random.uniform([batch, 1, 1, 3], -shift, shift)
    od = tf.einsum("bhwc,cd->bhwd", hed * alpha + beta, _RGB_FROM_HED)
    return tf.clip_by_value(tf.exp(-od), 0.0, 1.0)


def colour_jitter(images: tf.Tensor, strength: float = 1.0) -> tf.Tensor:
    """Brightness, contrast, saturation and hue: scanner and camera differences (`strength` 2:
    twice the ranges, about Tellez et al. 2019's HSV-strong)."""
    images = tf.image.random_brightness(images, 0.08 * strength)
    images = tf.image.random_contrast(images, 1 - 0.2 * strength, 1 + 0.2 * strength)
    images = tf.image.random_saturation(images, 1 - 0.2 * strength, 1 + 0.2 * strength)
    images = tf.image.random_hue(images, 0.03 * strength)
    return tf.clip_by_value(images, 0.0, 1.0)


def affine(images: tf.Tensor, fill: str = "reflect") -> tf.Tensor:
    """Rotation (any angle), zoom and shear for dermoscopy photos, with a reflecting fill."""
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    angle = tf.random.uniform([batch], -math.pi, math.pi)
    zoom = tf.random.uniform([batch], 0.85, 1.15)
    shear = tf.random.uniform([batch], -0.15, 0.15)
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    cx, cy = width / 2, height / 2
    a0, a1 = cos, -sin + shear
    b0, b1 = sin, cos
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zeros = tf.zeros([batch])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill.upper(),
    )


def for_histology(images: tf.Tensor) -> tf.Tensor:
    return colour_jitter(hed_jitter(dihedral(images)))


def for_histology_strong(images: tf.Tensor) -> tf.Tensor:
    """Stronger stain and colour ranges (Tellez et al. 2019: HED and HSV "strong" generalised
    best to other labs): a cross-validation ablation of for_histology."""
    return colour_jitter(hed_jitter(dihedral(images), scale=0.35, shift=0.1), strength=2.0)


def for_dermoscopy(images: tf.Tensor) -> tf.Tensor:
    images = tf.image.random_flip_up_down(tf.image.random_flip_left_right(images))
    return colour_jitter(affine(images))
