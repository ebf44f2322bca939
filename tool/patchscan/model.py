"""The model session: the only module that imports onnxruntime.

A patchscan model is an ONNX file whose metadata entry `patchscan` holds a JSON object with
everything inference needs (input size, classes, threshold) and what a report should say about
it (version, metrics, training data, license). Nothing else is read from anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from patchscan.errors import ModelError, UsageError
from patchscan.resources import bundled_models_dir

METADATA_KEY = "patchscan"


@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX file says about itself."""

    name: str
    version: str
    description: str
    classes: tuple[str, str]  # (negative, positive); the model outputs P(positive)
    input_size: tuple[int, int]  # (width, height)
    threshold: float
    license: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def positive(self) -> str:
        return self.classes[1]

    def label(self, probability: float, threshold: float) -> str:
        return self.classes[1] if probability >= threshold else self.classes[0]

    @classmethod
    def from_metadata(cls, raw: dict[str, Any]) -> ModelInfo:
        try:
            classes = tuple(str(c) for c in raw["classes"])
            width, height = (int(v) for v in raw["input_size"])
            if len(classes) != 2:
                raise ValueError(f"expected 2 classes, got {len(classes)}")
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                description=str(raw.get("description", "")),
                classes=(classes[0], classes[1]),
                input_size=(width, height),
                threshold=float(raw["threshold"]),
                license=str(raw.get("license", "")),
                metrics=dict(raw.get("metrics", {})),
                training=dict(raw.get("training", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model metadata is incomplete or invalid: {exc}") from None

    def to_metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "classes": list(self.classes),
            "positive_class": self.positive,
            "input_size": list(self.input_size),
            "threshold": self.threshold,
            "license": self.license,
            "metrics": self.metrics,
            "training": self.training,
        }


def bundled_models() -> dict[str, Path]:
    """Name → path of every model shipped in assets/models."""
    folder = bundled_models_dir()
    return {path.stem: path for path in sorted(folder.glob("*.onnx"))}


def resolve_model(spec: str) -> Path:
    """A bundled model's name, or a path to an .onnx file."""
    models = bundled_models()
    if spec in models:
        return models[spec]
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise UsageError(f"{spec}: model file not found")
        return path
    names = ", ".join(models) or "none"
    raise UsageError(f"unknown model {spec!r}: use a bundled model ({names}) or an .onnx file")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_info(path: Path) -> ModelInfo:
    """Read a model's metadata without building a session (cheap: `patchscan models`)."""
    import onnxruntime as ort

    return _info_from_session(_new_session(path, ort.SessionOptions()), path)


class ModelSession:
    """One onnxruntime CPU session per run, started only when there is something to classify.

    Given `info` (remembered by the result store for this sha256), a run whose results are all
    known never imports onnxruntime at all.
    """

    def __init__(
        self, path: Path, threads: int = 0, info: ModelInfo | None = None, sha256: str = ""
    ) -> None:
        self.path = path
        self.sha256 = sha256 or file_sha256(path)
        self._threads = threads
        self._session: Any = None
        self.info = info if info is not None else self._start()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """P(positive class) for a float32 batch (N, H, W, 3) in [0, 1]."""
        if self._session is None:
            self._start()
        (output,) = self._session.run(None, {self._input: batch})
        return np.asarray(output, dtype=np.float32).reshape(len(batch))

    def _start(self) -> ModelInfo:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # same speed here, 60 MB less peak memory
        # No spinning: a waiting watch loop must not burn a core between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = _new_session(self.path, options)
        self._input = self._session.get_inputs()[0].name
        return _info_from_session(self._session, self.path)


def _new_session(path: Path, options: Any) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(
            f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})"
        ) from None


def _info_from_session(session: Any, path: Path) -> ModelInfo:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ModelError(f"{path}: ONNX file has no '{METADATA_KEY}' metadata")
    try:
        raw = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: '{METADATA_KEY}' metadata is not JSON ({exc})") from None
    return ModelInfo.from_metadata(raw)
