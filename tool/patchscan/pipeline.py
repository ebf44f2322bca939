"""Decode → preprocess → batched inference → one Result per image, in discovery order.

Decoding runs on a thread pool (PIL releases the GIL while it decodes) a bounded window ahead of
inference, so memory stays flat however many files there are; a file that fails becomes an
error Result and the run goes on.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from patchscan.errors import ImageError
from patchscan.imaging import load_rgb, to_model_input
from patchscan.model import ModelInfo, ModelSession
from patchscan.naming import NameInfo, parse_name

log = logging.getLogger(__name__)

TILE = 8  # px per patch in the tissue mosaic of the report


@dataclass(frozen=True)
class Result:
    path: Path
    name: NameInfo
    probability: float | None = None
    label: str = ""
    error: str = ""
    tile: np.ndarray | None = None  # a TILE x TILE thumbnail, only for patches with x, y

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class _Decoded:
    path: Path
    name: NameInfo
    pixels: np.ndarray | None
    tile: np.ndarray | None
    error: str


def classify(
    paths: Iterable[Path],
    session: ModelSession,
    threshold: float,
    batch_size: int,
    workers: int,
) -> Generator[Result, None, None]:
    """Yield one Result per path, in order."""
    batch: list[_Decoded] = []
    decoded = 0  # images in `batch`; errors ride along without taking a model slot
    for item in _decode_ahead(paths, session.info, workers, window=batch_size * 4):
        batch.append(item)
        decoded += item.pixels is not None
        if decoded >= batch_size:
            yield from _infer(batch, session, threshold)
            batch, decoded = [], 0
    yield from _infer(batch, session, threshold)


def _decode_ahead(
    paths: Iterable[Path], info: ModelInfo, workers: int, window: int
) -> Iterator[_Decoded]:
    pending: collections.deque[Future[_Decoded]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        try:
            for path in paths:
                pending.append(pool.submit(_decode, path, info))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _decode(path: Path, info: ModelInfo) -> _Decoded:
    name = parse_name(path, info.classes)
    try:
        pixels = load_rgb(path, info.input_size)
    except ImageError as exc:
        return _Decoded(path, name, None, None, str(exc))
    tile = _tile(pixels) if name.x is not None else None  # here, off the inference thread
    return _Decoded(path, name, pixels, tile, "")


def _infer(batch: list[_Decoded], session: ModelSession, threshold: float) -> Iterator[Result]:
    good = [d.pixels for d in batch if d.pixels is not None]
    probabilities: Iterator[float] = iter(())
    if good:
        probabilities = iter(session.predict(to_model_input(np.stack(good))).tolist())
    for item in batch:
        if item.pixels is None:
            yield Result(item.path, item.name, error=item.error)
            continue
        probability = next(probabilities)
        yield Result(
            item.path,
            item.name,
            probability=probability,
            label=session.info.label(probability, threshold),
            tile=item.tile,
        )


def _tile(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((TILE, TILE), Image.Resampling.BOX))
