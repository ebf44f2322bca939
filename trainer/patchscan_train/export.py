"""Keras → ONNX with tf2onnx, metadata written into the file, and a parity check that refuses drift."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from patchscan.imaging import to_model_input
from patchscan.model import METADATA_KEY, Model, ModelInfo, Session

PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """onnxruntime and Keras disagree: the exported file must not ship."""


def export_onnx(model: keras.Model, info: ModelInfo, path: Path, check_images: np.ndarray) -> float:
    """Write `path` and return the largest |ORT - Keras| difference on `check_images` (uint8).

    Goes through a tf.function (tf2onnx's from_keras breaks on some Keras 3 models).
    """
    width, height = info.input_size
    spec = (tf.TensorSpec((None, height, width, 3), tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def serve(image: tf.Tensor) -> tf.Tensor:
        return model(image, training=False)

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=17)
    set_metadata(proto, info)
    proto.producer_name = "patchscan-train"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(proto, str(tmp))
    difference = parity(model, tmp, check_images)
    if difference > PARITY_TOLERANCE:
        tmp.unlink()
        raise ParityError(
            f"onnxruntime differs from Keras by {difference:.2e} > {PARITY_TOLERANCE}"
        )
    tmp.replace(path)
    return difference


def set_metadata(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """The model's `patchscan` metadata entry (patchscan.model reads it), replaced if present."""
    kept = [entry for entry in proto.metadata_props if entry.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(info.to_metadata())


def rewrite_metadata(path: Path, info: ModelInfo) -> None:
    """Replace a finished ONNX file's metadata (the graph untouched), atomically."""
    proto = onnx.load(str(path))
    set_metadata(proto, info)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)


def parity(model: keras.Model, onnx_path: Path, images: np.ndarray) -> float:
    """Largest absolute difference in P(positive) between Keras and patchscan's own session."""
    session = Session(Model.open(onnx_path))
    batch = to_model_input(images)
    expected = model.predict(batch, batch_size=256, verbose=0).reshape(-1)
    got = np.concatenate([session.predict(batch[i : i + 256]) for i in range(0, len(batch), 256)])
    return float(np.max(np.abs(expected - got)))


def onnx_throughput(path: Path, images: np.ndarray, batch_size: int = 64) -> float:
    """Images per second through patchscan's own session (all cores), for the model card."""
    session = Session(Model.open(path))
    batch = to_model_input(np.resize(images, (batch_size, *images.shape[1:])))
    session.predict(batch)  # warm-up: first run plans memory
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 2.0:
        session.predict(batch)
        runs += 1
    return runs * batch_size / (time.perf_counter() - started)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of the conv and dense layers (the rest is noise)."""
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * out * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * out * kh * kw
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def _leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer, looking inside nested models (the skin net wraps its backbone)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
