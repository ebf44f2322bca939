"""Fit a model on the training split, keeping the weights with the best validation ROC AUC."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from patchscan.imaging import to_model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss (IDC is ~20% positive)."""
    positives = float(y.mean())
    return {0: 0.5 / (1 - positives), 1: 0.5 / positives}


def training_dataset(
    images: np.ndarray,
    y: np.ndarray,
    settings: FitSettings,
    augment: Callable[[tf.Tensor], tf.Tensor],
) -> tf.data.Dataset:
    weights = class_weights(y)
    sample_weight = np.where(y > 0.5, weights[1], weights[0]).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, y, sample_weight))
    data = data.shuffle(len(images), seed=settings.seed, reshuffle_each_iteration=True)
    data = data.batch(settings.batch_size, drop_remainder=True)
    return data.map(
        lambda x, t, w: (augment(tf.cast(x, tf.float32) / 255.0), t, w),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).prefetch(tf.data.AUTOTUNE)


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    settings: FitSettings,
    augment: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[dict[str, list[float]], float]:
    """Train in place; returns the per-epoch history and the wall time in seconds."""
    keras.utils.set_random_seed(settings.seed)
    steps = settings.epochs * (len(train[0]) // settings.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=settings.patience, restore_best_weights=True
    )
    started = time.monotonic()
    history = model.fit(
        training_dataset(train[0], train[1], settings, augment),
        validation_data=(to_model_input(val[0]), val[1]),
        validation_batch_size=512,
        epochs=settings.epochs,
        callbacks=[stop],
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=2,
    )
    return {
        k: [float(v) for v in vs] for k, vs in history.history.items()
    }, time.monotonic() - started


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """P(positive) per uint8 image."""
    return model.predict(to_model_input(images), batch_size=512, verbose=0).reshape(-1)
