"""Decode → preprocess → batched inference → one Result per image, in discovery order.

Decoding runs in worker processes (PIL parses PNG chunks in Python, so threads stay bound to one
core by the GIL), in chunks, a bounded window ahead of inference, so memory stays flat however
many files there are; a file that fails becomes an error Result and the run goes on. Results
already known (from the result store) pass straight through, keeping their place in the order.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import signal
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
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


class DecodePool:
    """Worker processes that read and decode images: started on first use, reused after.

    A scan makes one per run; a watch keeps one for its whole life, so a file that lands does
    not wait for processes to start. A run with nothing new to read never starts any.
    """

    CHUNK = 32  # images per task: one pickle round trip per chunk, not per file

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, chunk: list[Candidate], info: ModelInfo) -> Future[list[_Decoded]]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork onnxruntime
                initializer=_ignore_ctrl_c,
            )
        return self._pool.submit(_decode_chunk, chunk, info)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def classify(
    jobs: Iterable[Candidate | Result],
    session: ModelSession,
    threshold: float,
    batch_size: int,
    pool: DecodePool,
) -> Generator[Result, None, None]:
    """Yield one Result per job, in order: images are classified, Results pass through."""
    batch: list[_Decoded | Result] = []
    decoded = 0  # images in `batch`; errors and known results ride along without a model slot
    for item in _decode_ahead(jobs, session.info, pool, window=max(4, batch_size // 8)):
        batch.append(item)
        decoded += isinstance(item, _Decoded) and item.pixels is not None
        if decoded >= batch_size:
            yield from _infer(batch, session, threshold)
            batch, decoded = [], 0
    yield from _infer(batch, session, threshold)


_Pending = Future[list[_Decoded]] | Result


def _decode_ahead(
    jobs: Iterable[Candidate | Result], info: ModelInfo, pool: DecodePool, window: int
) -> Iterator[_Decoded | Result]:
    """Decoded images and known results in job order, with at most `window` chunks in flight."""
    pending: collections.deque[_Pending] = collections.deque()
    chunk: list[Candidate] = []
    try:
        for job in jobs:
            if isinstance(job, Result):
                if chunk:
                    pending.append(pool.submit(chunk, info))
                    chunk = []
                pending.append(job)
            else:
                chunk.append(job)
                if len(chunk) >= pool.CHUNK:
                    pending.append(pool.submit(chunk, info))
                    chunk = []
            while pending and (len(pending) >= window or isinstance(pending[0], Result)):
                yield from _take(pending)
        if chunk:
            pending.append(pool.submit(chunk, info))
        while pending:
            yield from _take(pending)
    finally:
        for future in pending:
            if isinstance(future, Future):
                future.cancel()


def _take(pending: collections.deque[_Pending]) -> Iterator[_Decoded | Result]:
    head = pending.popleft()
    if isinstance(head, Result):
        yield head
    else:
        yield from head.result()


def _ignore_ctrl_c() -> None:
    """Workers leave Ctrl-C to the main process, which stops them after saving."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_chunk(chunk: list[Candidate], info: ModelInfo) -> list[_Decoded]:
    return [_decode(image, info) for image in chunk]


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
    """An owned copy: an array viewing a PIL image keeps the image's whole memory block alive
    (about 100 KB per tile here, 1.5 GB at 100k patches)."""
    small = Image.fromarray(pixels).resize((TILE, TILE), Image.Resampling.BOX)
    return np.frombuffer(small.tobytes(), np.uint8).reshape(TILE, TILE, 3)
