"""Fit a model on the training split, keeping the weights with the best validation ROC AUC."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from patchscan import metrics
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
    weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of augmented images, labels and loss weights: the classes balanced, each example
    times its own weight when `weights` are given."""
    per_class = class_weights(y)
    sample_weight = np.where(y > 0.5, per_class[1], per_class[0]).astype(np.float32)
    if weights is not None:
        sample_weight *= weights.astype(np.float32)
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
    val: tuple[np.ndarray, np.ndarray] | None,
    settings: FitSettings,
    augment: Callable[[tf.Tensor], tf.Tensor],
    teacher: keras.Model | None = None,
    weights: np.ndarray | None = None,
) -> tuple[dict[str, list[float]], float]:
    """Train in place (towards `teacher` too, when given; each training example's loss times
    its `weights`, when given); returns the per-epoch history and the wall time in seconds. With
    `val`, the weights of the best validation epoch are kept (and training stops early);
    without, all epochs run and the last weights stay (a model trained on every patient, its
    recipe's epochs fixed by cross-validation)."""
    keras.utils.set_random_seed(settings.seed)
    steps = settings.epochs * (len(train[0]) // settings.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, steps, alpha=0.02)
    if teacher is not None:
        model = Distilled(model, teacher)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    started = time.monotonic()
    history = model.fit(
        training_dataset(train[0], train[1], settings, augment, weights),
        epochs=settings.epochs,
        callbacks=[KeepBest(val[0], val[1], settings.patience)] if val is not None else [],
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=2,
    )
    return {
        k: [float(v) for v in vs] for k, vs in history.history.items()
    }, time.monotonic() - started


class Distilled(keras.Model):
    """Trains `student` towards the mean of each image's label and `teacher`'s probability for
    the same augmented image (knowledge distillation, Hinton et al. 2015).

    Besides each label, the student learns how sure a bigger model is of the image: the soft
    targets rank the doubtful patches, which hard labels leave tied. Metrics and validation see
    the student's own output against the true labels.
    """

    TEACHER_SHARE = 0.5

    def __init__(self, student: keras.Model, teacher: keras.Model) -> None:
        super().__init__(name=f"{student.name}_distilled")
        self.student, self.teacher = student, teacher
        teacher.trainable = False

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(images, training=training)

    def compute_loss(  # type: ignore[override]
        self,
        x: tf.Tensor,
        y: tf.Tensor,
        y_pred: tf.Tensor,
        sample_weight: tf.Tensor | None = None,
        training: bool = True,
    ) -> tf.Tensor:
        soft = tf.reshape(self.teacher(x, training=False), tf.shape(y_pred))
        hard = tf.reshape(tf.cast(y, y_pred.dtype), tf.shape(y_pred))
        target = (1 - self.TEACHER_SHARE) * hard + self.TEACHER_SHARE * soft
        return super().compute_loss(x, target, y_pred, sample_weight, training)


class KeepBest(keras.callbacks.Callback):
    """Validate after every epoch, keep the weights with the best validation ROC AUC, and stop
    once `patience` epochs pass without a better one.

    Validation is exact ROC AUC on every image (Keras' AUC metric bins scores into 200
    thresholds), and the numbers land in the history for the run's curves.
    """

    def __init__(self, images: np.ndarray, y: np.ndarray, patience: int) -> None:
        super().__init__()
        self.images, self.y, self.patience = images, y, patience
        self.best_auc, self.waited = -1.0, 0
        self.best_weights: list[np.ndarray] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        scores = predict(self.model, self.images)
        validation = validation_logs(self.y, scores)
        if logs is not None:
            logs.update(validation)  # into the history, after the training metrics
        if validation["val_auc"] > self.best_auc:
            self.best_auc, self.waited = validation["val_auc"], 0
            self.best_weights = self.model.get_weights()
        else:
            self.waited += 1
            self.model.stop_training = self.waited >= self.patience

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.model.set_weights(self.best_weights)


def validation_logs(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Loss, accuracy at 0.5 and exact ROC AUC, named as Keras names its validation metrics."""
    p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return {
        "val_loss": float(loss),
        "val_accuracy": float(np.mean((scores >= 0.5) == (y > 0.5))),
        "val_auc": float(metrics.roc_auc(y, scores) or 0.0),
    }


def predict(model: keras.Model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """P(positive) per uint8 image."""
    return model.predict(to_model_input(images), batch_size=batch_size, verbose=0).reshape(-1)
