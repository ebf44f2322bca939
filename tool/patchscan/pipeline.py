"""Decode → preprocess → classify → one Result per image, in discovery order.

Worker processes read, decode and classify images in chunks (a few onnxruntime runs per chunk,
on a single-threaded session of each worker's own): PIL parses PNG chunks in Python, so threads
would stay bound to one core by the GIL, and a worker that also classifies sends back a
probability per image instead of its pixels. Chunks run a bounded window ahead, so memory stays
flat however many files there are; a file that fails becomes an error Result and the run goes on.
Results already known (from the result store) pass straight through, keeping their place in
the order. The main process never starts onnxruntime for a scan: it only keeps the books, and
loads nothing of the workers' side (worker.py: numpy, PIL, onnxruntime) until it has an image to
classify, and never at all when it writes only the CSV.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from patchscan.context import SlideContext
from patchscan.discover import Candidate
from patchscan.model import Model, ModelInfo
from patchscan.results import Classified, Labels, Result

log = logging.getLogger(__name__)

# Images per worker task, by the pixels the network runs: 256 patches of 50x50, 3 photos in 8
# views. Each task costs about 0.5 ms of CPU in the main process and as much in a worker, however
# small (process-pool queues, pipes, wake-ups): an idc scan's main process took 72 µs a patch at
# 16 per task, 50-56 at 64, 41 at 256, 37 at 1,024, and its workers 220, 200-220, 188 and 180 µs.
# Beyond 256 memory grows (312 MB at 1,024) for little. The onnxruntime runs inside a task are
# smaller still (model.PIXELS_PER_RUN), so the network's memory does not grow with the task.
PIXELS_PER_BATCH = 640_000


def batch_size_for(info: ModelInfo) -> int:
    width, height = info.input_size
    return max(1, PIXELS_PER_BATCH // (width * height * info.views))


class Workers:
    """Worker processes that read, decode and classify: started on first use, reused after.

    A scan makes one per run; a watch keeps one for its whole life, so a file that lands does
    not wait for processes or sessions to start. A run with nothing new to read never starts any.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, chunk: list[Candidate], model: Model, tiles: bool) -> Future[list[Classified]]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork onnxruntime
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
        return self._pool.submit(_classify_in_worker, chunk, model, tiles)

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
    model: Model,
    labels: Labels,
    batch_size: int | None,
    workers: Workers,
    tiles: bool,
) -> Generator[Result, None, None]:
    """Yield one Result per job, in order: images are classified, Results pass through.

    `batch_size` images (None: batch_size_for the model's input) go to a worker at a time;
    with `tiles`, positioned patches come back with a thumbnail.
    """
    chunk_size = batch_size or batch_size_for(model.info)
    for item in _classify_ahead(jobs, model, tiles, workers, chunk_size, window=4):
        if isinstance(item, Result):
            yield item
            continue
        image, answer = item
        if answer.probability is None:
            yield Result(image.path, answer.name, error=answer.error, stamp=image.stamp)
            continue
        probability = labels.calibrated(answer.probability)
        yield Result(
            image.path,
            answer.name,
            probability=probability,
            label=labels.of_probability(probability),
            tile=answer.tile,
            stamp=image.stamp,
            review=labels.review_probability(probability),
            colour=answer.colour,
        )


def with_context(
    results: Iterable[Result], context: SlideContext | None, labels: Labels
) -> Generator[Result, None, None]:
    """`results` in the same order, the positioned patches of each slide with their context score
    and labelled by it (labels.of_context); everything as it is for a model without `context`.

    Results are held back while they belong to the slide being read; a slide met again after
    another one (patches split across far-apart folders) is scored per stretch, with a warning.
    Only positioned patches make up a slide: a file without x, y (a loose photo in a lab folder)
    never opens, ends or splits one. It passes straight through, or, met while a slide is held,
    waits among its patches only to keep its place in the order.
    """
    if context is None:
        yield from results
        return
    held: list[Result] = []
    slide: str | None = None  # the group of the positioned patches held
    done: set[str] = set()
    try:
        for result in results:
            if result.name.x is None:
                if held:
                    held.append(result)
                else:
                    yield result
                continue
            group = result.name.group
            if slide is not None and group != slide:
                yield from _scored(held, context, labels)
                done.add(slide)
                held, slide = [], None
            if slide is None:
                if group in done:
                    _warn_split(group)
                slide = group
            held.append(result)
    except KeyboardInterrupt:
        # Ctrl-C: hand over what was held, then stop as asked.
        yield from _scored(held, context, labels)
        raise
    yield from _scored(held, context, labels)


def _warn_split(group: str) -> None:
    log.warning(
        "slide %s: its patches are not together in the scan's order, so each stretch of them "
        "is scored with its own neighbours only",
        group,
    )


def _scored(held: list[Result], context: SlideContext, labels: Labels) -> list[Result]:
    at = [
        i
        for i, r in enumerate(held)
        if r.probability is not None and r.name.x is not None and r.name.y is not None
    ]
    patches = [(held[i].name.x, held[i].name.y, held[i].probability) for i in at]
    out = list(held)
    for i, mean in zip(at, context.scores(patches), strict=True):  # type: ignore[arg-type]
        r, score = held[i], labels.calibrated_context(mean)
        label, review = labels.of_context(score), labels.review_context(score)
        out[i] = Result(
            r.path,
            r.name,
            r.probability,
            label,
            r.error,
            r.tile,
            r.stamp,
            r.known,
            score,
            review,
            r.colour,
        )
    return out


_Pending = tuple[list[Candidate], Future[list[Classified]]] | Result


def _classify_ahead(
    jobs: Iterable[Candidate | Result],
    model: Model,
    tiles: bool,
    workers: Workers,
    chunk_size: int,
    window: int,
) -> Iterator[Result | tuple[Candidate, Classified]]:
    """Known Results and (image, answer) pairs in job order, with at most `window` chunks in
    flight per worker."""
    pending: collections.deque[_Pending] = collections.deque()
    chunk: list[Candidate] = []
    limit = window * workers.workers

    def flush() -> None:
        nonlocal chunk
        if chunk:
            pending.append((chunk, workers.submit(chunk, model, tiles)))
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


def _take(pending: collections.deque[_Pending]) -> Iterator[Result | tuple[Candidate, Classified]]:
    head = pending.popleft()
    if isinstance(head, Result):
        yield head
    else:
        chunk, future = head
        yield from zip(chunk, future.result(), strict=True)


def _classify_in_worker(chunk: list[Candidate], model: Model, tiles: bool) -> list[Classified]:
    """Runs in a worker. The workers' side (numpy, PIL, onnxruntime) is imported there only:
    the main process never waits on those imports, and a CSV-only scan never loads them."""
    from patchscan.worker import classify_chunk

    return classify_chunk(chunk, model, tiles)


def _start_worker(parent: int) -> None:
    """Workers leave Ctrl-C to the main process, which stops them after saving, and end with it
    however it ends. Before numpy is imported: its OpenBLAS would start a thread per core (0.1 s
    of CPU per worker) for matrix products a worker never does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """A worker (~90 MB) must not outlive its run: killed with -9, the main process cannot stop
    its workers, which would wait on the task queue under PID 1 forever, and with them
    multiprocessing's resource tracker (it ends once every process holding its pipe has).

    On Linux the kernel sends SIGKILL when the parent ends, even to a worker stuck in a read;
    elsewhere a thread waits for the parent to end. A parent that ended before either was in
    place has already left this process to PID 1 (POSIX), which getppid() then says.
    """
    if not _parent_death_signal():
        threading.Thread(target=_exit_when_parent_ends, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _parent_death_signal() -> bool:
    """Ask Linux for SIGKILL when the parent ends (prctl PR_SET_PDEATHSIG); False elsewhere.

    The kernel means the thread that started the worker: Workers are started, used and closed
    by one thread (the scan's, the watch's), which outlives them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0) == 0)  # 1: PDEATHSIG
    except (OSError, AttributeError):
        return False


def _exit_when_parent_ends() -> None:
    """Wait for the parent to end, then end at once (the watchdog where there is no signal):
    multiprocessing's parent sentinel is a pipe the parent holds open (POSIX) or the parent's
    process handle (Windows), so this needs no polling."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)
