"""Decode → preprocess → classify → one Result per image, in discovery order.

Worker processes read, decode and classify images in chunks (one onnxruntime call per chunk, on
a single-threaded session of each worker's own): PIL parses PNG chunks in Python, so threads
would stay bound to one core by the GIL, and a worker that also classifies sends back a
probability per image instead of its pixels. Chunks run a bounded window ahead, so memory stays
flat however many files there are; a file that fails becomes an error Result and the run goes on.
Results already known (from the result store) pass straight through, keeping their place in
the order. The main process never starts onnxruntime for a scan: it only keeps the books.
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
class _Classified:
    """A worker's answer for one image: its probability, or why there is none."""

    name: NameInfo
    probability: float | None
    tile: np.ndarray | None
    error: str


@dataclass(frozen=True)
class _Model:
    """What a worker needs to classify with the run's model (a session is not picklable)."""

    path: Path
    sha256: str
    info: ModelInfo
    tiles: bool  # thumbnails for the report's slide mosaic


class Workers:
    """Worker processes that read, decode and classify: started on first use, reused after.

    A scan makes one per run; a watch keeps one for its whole life, so a file that lands does
    not wait for processes or sessions to start. A run with nothing new to read never starts any.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, chunk: list[Candidate], model: _Model) -> Future[list[_Classified]]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork onnxruntime
                initializer=_ignore_ctrl_c,
            )
        return self._pool.submit(_classify_chunk, chunk, model)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def classify(
    jobs: Iterable[Candidate | Result],
    session: ModelSession,
    threshold: float,
    batch_size: int,
    workers: Workers,
    tiles: bool,
) -> Generator[Result, None, None]:
    """Yield one Result per job, in order: images are classified, Results pass through.

    `batch_size` images go to a worker at a time, as one onnxruntime batch.
    """
    model = _Model(session.path, session.sha256, session.info, tiles)
    for item in _classify_ahead(jobs, model, workers, batch_size, window=4):
        if isinstance(item, Result):
            yield item
            continue
        image, answer = item
        probability = answer.probability
        yield Result(
            image.path,
            answer.name,
            probability=probability,
            label="" if probability is None else session.info.label(probability, threshold),
            error=answer.error,
            tile=answer.tile,
            stamp=image.stamp,
        )


_Pending = tuple[list[Candidate], Future[list[_Classified]]] | Result


def _classify_ahead(
    jobs: Iterable[Candidate | Result],
    model: _Model,
    workers: Workers,
    chunk_size: int,
    window: int,
) -> Iterator[Result | tuple[Candidate, _Classified]]:
    """Known Results and (image, answer) pairs in job order, with at most `window` chunks in
    flight per worker."""
    pending: collections.deque[_Pending] = collections.deque()
    chunk: list[Candidate] = []
    limit = window * workers.workers

    def flush() -> None:
        nonlocal chunk
        if chunk:
            pending.append((chunk, workers.submit(chunk, model)))
            chunk = []

    try:
        for job in jobs:
            if isinstance(job, Result):
                flush()
                pending.append(job)
            else:
                chunk.append(job)
                if len(chunk) >= chunk_size:
                    flush()
            while pending and (len(pending) >= limit or isinstance(pending[0], Result)):
                yield from _take(pending)
        flush()
        while pending:
            yield from _take(pending)
    finally:
        for item in pending:
            if not isinstance(item, Result):
                item[1].cancel()


def _take(pending: collections.deque[_Pending]) -> Iterator[Result | tuple[Candidate, _Classified]]:
    head = pending.popleft()
    if isinstance(head, Result):
        yield head
    else:
        chunk, future = head
        yield from zip(chunk, future.result(), strict=True)


def _ignore_ctrl_c() -> None:
    """Workers leave Ctrl-C to the main process, which stops them after saving."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_sessions: dict[str, ModelSession] = {}  # in a worker: one session per model it has met


def _classify_chunk(chunk: list[Candidate], model: _Model) -> list[_Classified]:
    session = _sessions.get(model.sha256)
    if session is None:
        session = _sessions[model.sha256] = ModelSession(
            model.path, threads=1, info=model.info, sha256=model.sha256
        )
    decoded = [_decode(image.path, model) for image in chunk]
    good = [pixels for _, pixels, _ in decoded if pixels is not None]
    probabilities: Iterator[float] = iter(())
    if good:
        probabilities = iter(session.predict(to_model_input(np.stack(good))).tolist())
    answers = []
    for name, pixels, error in decoded:
        if pixels is None:
            answers.append(_Classified(name, None, None, error))
        else:
            tile = _tile(pixels) if model.tiles and name.x is not None else None
            answers.append(_Classified(name, next(probabilities), tile, ""))
    return answers


def _decode(path: Path, model: _Model) -> tuple[NameInfo, np.ndarray | None, str]:
    name = parse_name(path, model.info.classes)
    try:
        return name, load_rgb(path, model.info.input_size), ""
    except ImageError as exc:
        return name, None, str(exc)


def _tile(pixels: np.ndarray) -> np.ndarray:
    """An owned copy: an array viewing a PIL image keeps the image's whole memory block alive
    (about 100 KB per tile here, 1.5 GB at 100k patches)."""
    small = Image.fromarray(pixels).resize((TILE, TILE), Image.Resampling.BOX)
    return np.frombuffer(small.tobytes(), np.uint8).reshape(TILE, TILE, 3)
