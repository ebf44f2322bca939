"""Decode → preprocess → batched inference → one Result per image, in discovery order.

Decoding runs on a thread pool (PIL releases the GIL while it decodes) a bounded window ahead of
inference, so memory stays flat however many files there are; a file that fails becomes an
error Result and the run goes on. Results already known (from the result store) pass straight
through, keeping their place in the order.
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

from patchscan.discover import Candidate, Stamp
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
    stamp: Stamp | None = None  # the file's (size, mtime_ns) when it was read
    known: bool = False  # came from the result store, not from the model just now

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class _Decoded:
    image: Candidate
    name: NameInfo
    pixels: np.ndarray | None
    tile: np.ndarray | None
    error: str


def classify(
    jobs: Iterable[Candidate | Result],
    session: ModelSession,
    threshold: float,
    batch_size: int,
    workers: int,
) -> Generator[Result, None, None]:
    """Yield one Result per job, in order: images are classified, Results pass through."""
    batch: list[_Decoded | Result] = []
    decoded = 0  # images in `batch`; errors and known results ride along without a model slot
    for item in _decode_ahead(jobs, session.info, workers, window=batch_size * 4):
        batch.append(item)
        decoded += isinstance(item, _Decoded) and item.pixels is not None
        if decoded >= batch_size:
            yield from _infer(batch, session, threshold)
            batch, decoded = [], 0
    yield from _infer(batch, session, threshold)


def _decode_ahead(
    jobs: Iterable[Candidate | Result], info: ModelInfo, workers: int, window: int
) -> Iterator[_Decoded | Result]:
    pending: collections.deque[Future[_Decoded] | Result] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        try:
            for job in jobs:
                if isinstance(job, Result):
                    pending.append(job)
                else:
                    pending.append(pool.submit(_decode, job, info))
                if len(pending) >= window or isinstance(pending[0], Result):
                    yield _next(pending)
            while pending:
                yield _next(pending)
        finally:
            for future in pending:
                if isinstance(future, Future):
                    future.cancel()


def _next(pending: collections.deque[Future[_Decoded] | Result]) -> _Decoded | Result:
    head = pending.popleft()
    return head if isinstance(head, Result) else head.result()


def _decode(image: Candidate, info: ModelInfo) -> _Decoded:
    name = parse_name(image.path, info.classes)
    try:
        pixels = load_rgb(image.path, info.input_size)
    except ImageError as exc:
        return _Decoded(image, name, None, None, str(exc))
    tile = _tile(pixels) if name.x is not None else None  # here, off the inference thread
    return _Decoded(image, name, pixels, tile, "")


def _infer(
    batch: list[_Decoded | Result], session: ModelSession, threshold: float
) -> Iterator[Result]:
    good = [d.pixels for d in batch if isinstance(d, _Decoded) and d.pixels is not None]
    probabilities: Iterator[float] = iter(())
    if good:
        probabilities = iter(session.predict(to_model_input(np.stack(good))).tolist())
    for item in batch:
        if isinstance(item, Result):
            yield item
        elif item.pixels is None:
            yield Result(item.image.path, item.name, error=item.error, stamp=item.image.stamp)
        else:
            probability = next(probabilities)
            yield Result(
                item.image.path,
                item.name,
                probability=probability,
                label=session.info.label(probability, threshold),
                tile=item.tile,
                stamp=item.image.stamp,
            )


def _tile(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((TILE, TILE), Image.Resampling.BOX))
