"""The workers' side of the pipeline: read, decode and classify one chunk of images.

Runs in the worker processes (pipeline.Workers), each with a single-threaded onnxruntime
session of its own per model, kept for the worker's life.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from patchscan.discover import Candidate
from patchscan.errors import ImageError
from patchscan.imaging import load_rgb, to_array
from patchscan.model import Model, ModelInfo, Session
from patchscan.naming import NameInfo, parse_name
from patchscan.results import TILE, Classified
from patchscan.stain import colour_sums, sampled

_sessions: dict[str, Session] = {}  # in a worker: one session per model it has met


def classify_chunk(chunk: list[Candidate], model: Model, tiles: bool) -> list[Classified]:
    """Each image's answer, in order; with `tiles`, a thumbnail of every positioned patch for the
    report's slide mosaic."""
    session = _sessions.get(model.sha256)
    if session is None:
        session = _sessions[model.sha256] = Session(model, threads=1)
    decoded = [_decode(image.path, model) for image in chunk]
    good = [pixels for _, pixels, _ in decoded if pixels is not None]
    probabilities: Iterator[float] = iter(())
    if good:
        probabilities = iter(session.predict(np.stack(good)).tolist())
    answers = []
    step = colour_step(model.info)
    for name, pixels, error in decoded:
        if pixels is None:
            answers.append(Classified(name, None, None, error))
            continue
        tile = _tile(pixels) if tiles and name.x is not None else None
        colour = None
        if step and name.x is not None and name.y is not None and sampled(name.x, name.y, step):
            colour = colour_sums(pixels)
        answers.append(Classified(name, next(probabilities), tile, "", colour))
    return answers


def colour_step(info: ModelInfo) -> int:
    """The slide grid's step for colour sampling; 0 for a model that keeps no colour range."""
    if not info.stain:
        return 0
    return info.context.step if info.context else info.input_size[0]


def _decode(path: str, model: Model) -> tuple[NameInfo, np.ndarray | None, str]:
    name = parse_name(path, model.info.classes)
    try:
        return name, load_rgb(path, model.info.input_size), ""
    except ImageError as exc:
        return name, None, str(exc)


def _tile(pixels: np.ndarray) -> np.ndarray:
    """Its own pixels (to_array): a view would keep the resized image's whole memory block
    alive, about 100 KB per tile here, 1.5 GB at 100k patches."""
    return to_array(Image.fromarray(pixels).resize((TILE, TILE), Image.Resampling.BOX))
