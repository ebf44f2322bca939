"""The model: the only module that imports onnxruntime.

A patchscan model is an ONNX file whose metadata entry `patchscan` holds a JSON object with
everything inference needs (input size, classes, threshold) and what a report should say about
it (version, metrics, training data, license). Nothing else is read from anywhere.

Two things, kept apart: `Model` is the file as a value (path, sha256, metadata), cheap, picklable,
what the books and the reports need; `Session` is onnxruntime running it, built only where images
are classified (the scan's workers), never in a scan's main process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchscan.context import SlideContext
from patchscan.errors import ModelError, UsageError
from patchscan.resources import bundled_models_dir

if TYPE_CHECKING:
    import numpy as np

METADATA_KEY = "patchscan"

# Pixels per onnxruntime run: a worker's batch (pipeline.PIXELS_PER_BATCH) runs in pieces this
# size, so that a layer's output stays in a core's own cache (2 MB of L2 here). The idc pair at
# 64 patches a run writes 2.8 MB for its largest layer and took 196-237 µs a file in a worker
# (decode included, 5 runs); at 16 patches (0.7 MB), 185-212 µs, and 18 MB less memory.
PIXELS_PER_RUN = 40_000


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
    context: SlideContext | None = None  # slide models: how neighbours join a patch's call
    # Images the network runs per input image: views of it averaged inside the graph (the skin
    # model's 8 flips and rotations), which scale its compute and memory per image.
    views: int = 1
    # Fitted by the trainer on held-out patients (results.Labels reads them):
    # {"probability": {"a", "b"}, "context": {"a", "b"}}: Platt scaling of each score;
    calibration: dict[str, Any] | None = None
    # {"target", "confidence", "method", "calibration_set", "bands": {"probability": [[target,
    # low, high], ...], "context": [...]}}: the "needs review" band for each error-rate target;
    review: dict[str, Any] | None = None
    # {"method": "reinhard", "target": {"mean", "std"}, "spread": {"mean", "std"}, "drift_limit"}:
    # per-slide colour standardisation (stain.py) and the training slides' range.
    stain: dict[str, Any] | None = None

    @property
    def positive(self) -> str:
        return self.classes[1]

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
                context=SlideContext.from_metadata(raw["context"]) if raw.get("context") else None,
                views=int(raw.get("views", 1)),
                calibration=_optional_dict(raw, "calibration"),
                review=_optional_dict(raw, "review"),
                stain=_optional_dict(raw, "stain"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model metadata is incomplete or invalid: {exc}") from None

    def scan_figures(self) -> tuple[str, dict[str, Any]]:
        """The metrics that describe what a scan does with this model, and what they are.

        A scan labels a positioned patch by its slide-context score, so a slide model's
        patch-alone figures are not the scan's. Models trained by cross-validation carry the
        pooled out-of-fold figures of that (`estimate` says which); older slide models held-out
        test figures with a `slide_context` entry beside the patch-alone ones; others held-out
        test figures only.
        """
        estimate = self.metrics.get("estimate")
        if estimate:
            return f"{estimate}: pooled over the held-out folds", self.metrics
        context = self.metrics.get("slide_context")
        if self.context is not None and isinstance(context, dict):
            return "held-out test patients, each patch labelled with its slide context", context
        return "held-out test set", self.metrics

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
            **({"context": self.context.to_metadata()} if self.context else {}),
            **({"views": self.views} if self.views != 1 else {}),
            **{
                key: value
                for key, value in (
                    ("calibration", self.calibration),
                    ("review", self.review),
                    ("stain", self.stain),
                )
                if value is not None
            },
        }


def _optional_dict(raw: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return dict(value)


def bundled_models() -> dict[str, Path]:
    """Name → path of every model shipped in the package (patchscan/models)."""
    folder = bundled_models_dir()
    return {path.stem: path for path in sorted(folder.glob("*.onnx"))}


def resolve_model(spec: str) -> Path:
    """A bundled model's name, or a path to an .onnx file."""
    models = bundled_models()
    by_name = {name.casefold(): path for name, path in models.items()}
    if spec.casefold() in by_name:
        return by_name[spec.casefold()]
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
    """A model's metadata, read from the file without onnxruntime.

    The scan's main process only keeps the books; loading onnxruntime there just to read a few
    strings would cost ~50 MB of memory on top of the workers' own sessions.
    """
    try:
        props = _metadata_props(path.read_bytes())
    except (IndexError, ValueError):
        raise ModelError(f"{path}: not a loadable ONNX model (not an ONNX protobuf)") from None
    return _info_from_props(props, path)


def _metadata_props(data: bytes) -> dict[str, str]:
    """ModelProto.metadata_props (field 14: key = 1, value = 2) from the top-level fields."""
    props: dict[str, str] = {}
    position = 0
    while position < len(data):
        field, wire, position = _tag(data, position)
        if wire == 0:
            _, position = _varint(data, position)
        elif wire == 1 or wire == 5:
            position += 8 if wire == 1 else 4
        elif wire == 2:
            length, position = _varint(data, position)
            body, position = data[position : position + length], position + length
            if len(body) != length:
                raise ValueError("truncated")
            if field == 14:
                entry = _strings(body)
                props[entry.get(1, "")] = entry.get(2, "")
        else:
            raise ValueError(f"wire type {wire}")
    return props


def _strings(data: bytes) -> dict[int, str]:
    """The length-delimited fields of a small message, as text by field number."""
    fields, position = {}, 0
    while position < len(data):
        field, wire, position = _tag(data, position)
        if wire != 2:
            raise ValueError(f"wire type {wire} in a string entry")
        length, position = _varint(data, position)
        fields[field] = data[position : position + length].decode("utf-8")
        position += length
    return fields


def _tag(data: bytes, position: int) -> tuple[int, int, int]:
    key, position = _varint(data, position)
    return key >> 3, key & 7, position


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


@dataclass(frozen=True)
class Model:
    """A model file as a value: where it is, its sha256 (what stored results are keyed on) and
    what its metadata says. Picklable: this is what a worker is sent to build its Session from."""

    path: Path
    sha256: str
    info: ModelInfo

    @classmethod
    def open(cls, path: Path) -> Model:
        """The model at `path`, its metadata read from the file without onnxruntime."""
        return cls(path, file_sha256(path), read_info(path))


class Session:
    """One onnxruntime CPU session running `model`: only where images are classified."""

    def __init__(self, model: Model, threads: int = 0) -> None:
        import onnxruntime as ort

        self.model = model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # same speed here, 60 MB less peak memory
        # Without the arena, memory patterns leave each worker growing with every batch (77 MB
        # after the first, 137 MB after 6,000 patches; 83 MB without): ~3% slower, but flat.
        options.enable_mem_pattern = False
        # No spinning: a waiting watch loop must not burn a core between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = _new_session(model.path, options)
        self._input = self._session.get_inputs()[0].name
        width, height = model.info.input_size
        self._run_size = max(1, PIXELS_PER_RUN // (width * height * model.info.views))

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """P(positive class) for a batch (N, H, W, 3): float32 in [0, 1], or uint8 pixels as
        decoded, scaled a piece at a time (a worker's 256 patches would take 7.7 MB as floats).
        It runs PIXELS_PER_RUN pixels at a time."""
        import numpy as np  # here, not at the top: the main process reads models without numpy

        from patchscan.imaging import to_model_input

        step = self._run_size
        pieces = []
        for start in range(0, len(batch), step):
            piece = batch[start : start + step]
            if piece.dtype == np.uint8:
                piece = to_model_input(piece)
            pieces.append(self._session.run(None, {self._input: piece})[0])
        output = np.concatenate(pieces) if pieces else np.zeros(0, "float32")
        return output.reshape(len(batch)).astype("float32", copy=False)


def _new_session(path: Path, options: Any) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(
            f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})"
        ) from None


def _info_from_props(props: dict[str, str], path: Path) -> ModelInfo:
    if METADATA_KEY not in props:
        raise ModelError(f"{path}: ONNX file has no '{METADATA_KEY}' metadata")
    try:
        raw = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: '{METADATA_KEY}' metadata is not JSON ({exc})") from None
    return ModelInfo.from_metadata(raw)
