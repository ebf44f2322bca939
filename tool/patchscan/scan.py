"""A whole scan: discover → classify → stream the CSV → write the JSON and HTML summaries.

With outputs named, results are remembered in a result store beside them (store.py), so a rescan
only classifies new or changed files, and a rescan of a folder where nothing changed (same files,
sizes and mtimes, same model and settings, outputs as the last scan left them) only walks the
folder and leaves the outputs alone. Ctrl-C stops between batches; everything classified by then
is written as if the scan had ended, and is remembered for the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from patchscan import __version__
from patchscan.discover import Candidate, Found, walk
from patchscan.errors import UsageError
from patchscan.pipeline import Workers, classify, with_context
from patchscan.report.csv_writer import open_csv
from patchscan.report.summary import Summary
from patchscan.results import Labels, Result
from patchscan.run import Opened, RunSettings, open_run, own_files
from patchscan.store import ResultStore, Tally

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings(RunSettings):
    paths: tuple[Path, ...]
    force: bool = field(default=False, kw_only=True)  # re-classify what the store already knows

    def check(self) -> None:
        for path in self.paths:
            if not path.exists():
                raise UsageError(f"{path}: no such file or folder")
        super().check()


@dataclass(frozen=True)
class ScanOutcome:
    counts: dict[str, int]  # classified images per label
    errors: int
    interrupted: bool = False
    unchanged: bool = False  # nothing changed since the last complete scan: outputs left alone
    review: int | None = None  # calls in the model's review band; None: the model has no band

    @property
    def classified(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.errors else 0


def run_scan(
    settings: ScanSettings,
    command_line: str,
    on_result: Callable[[Result], None] = lambda result: None,
    stop: threading.Event | None = None,
) -> ScanOutcome:
    """Classify and write. Ctrl-C, or `stop` set (the window's Cancel), ends it early with
    everything classified so far written, as an interrupted scan."""
    settings.check()
    with open_run(settings, command_line, force=settings.force) as run:
        if run.store is not None and not settings.force:
            walked = _Fingerprint(settings, run.model.sha256, run.labels)
            last = _unchanged_since_last_scan(settings, run.store, walked)
            if last is not None:
                return ScanOutcome(
                    last["counts"], last["errors"], unchanged=True, review=last.get("review")
                )
        return _classify_and_write(settings, command_line, on_result, run, stop)


class _Cancelled(Exception):
    """`stop` was set: end the scan as Ctrl-C does."""


def _classify_and_write(
    settings: ScanSettings,
    command_line: str,
    on_result: Callable[[Result], None],
    run: Opened,
    stop: threading.Event | None,
) -> ScanOutcome:
    model, store, labels = run.model, run.store, run.labels
    summary = settings.new_summary(run, command_line)
    fingerprint = _Fingerprint(settings, model.sha256, labels)
    interrupted = False
    to_stdout = not settings.outputs.paths
    saver = _Saver(store)
    with (
        Workers(settings.worker_count()) as workers,
        open_csv(settings.csv)
        if settings.csv or to_stdout
        else contextlib.nullcontext() as csv_out,
    ):
        images = _images(settings, summary, fingerprint)
        jobs: Iterator[Candidate | Result] = (
            images
            if store is None or settings.force or not store.has_results()
            else _known_first(images, store, labels, summary.keep_tiles)
        )
        tiles = summary.keep_tiles
        classified = classify(jobs, model, labels, settings.batch_size, workers, tiles)
        results = with_context(classified, model.info.context, labels)
        try:
            for result in results:
                summary.add(result)
                if csv_out is not None:
                    csv_out.write(result)
                saver.add(result)
                on_result(result)
                if stop is not None and stop.is_set():
                    raise _Cancelled
        except (KeyboardInterrupt, _Cancelled):
            interrupted = True
            log.warning("interrupted: writing the %d results done so far", summary.classified)
        finally:
            results.close()
            classified.close()
            saver.commit()
    summary.finish(interrupted)
    settings.outputs.write(summary)
    review = summary.review_total if labels.has_review else None
    tally: Tally = {"counts": dict(summary.counts), "errors": summary.error_count, "review": review}
    if store is not None and not interrupted:
        store.remember_scan(fingerprint.hexdigest(), settings.outputs.paths, tally)
    return ScanOutcome(tally["counts"], tally["errors"], interrupted, review=review)


class _Fingerprint:
    """What a scan's outputs depend on: the tool, the model, the threshold, the paths asked for
    and where the outputs go, and every file met on the walk with its (size, mtime_ns)."""

    def __init__(self, settings: ScanSettings, model_sha256: str, labels: Labels) -> None:
        outputs = settings.outputs.paths
        given = [[os.path.abspath(p) for p in ps] for ps in (settings.paths, outputs)]
        self._hash = hashlib.blake2b(
            json.dumps([__version__, model_sha256, labels.threshold, given]).encode()
        )

    def see(self, found: Found) -> None:
        path, skip, stamp = found
        self._hash.update(f"{path}\0{skip}\0{stamp}\n".encode("utf-8", "surrogateescape"))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _unchanged_since_last_scan(
    settings: ScanSettings, store: ResultStore, walked: _Fingerprint
) -> Tally | None:
    """The last scan's tally when a walk finds exactly what it found (checked only when the
    outputs are still as that scan left them: otherwise they are rewritten anyway)."""
    last = store.last_scan(settings.outputs.paths)
    if last is None:
        return None
    for found in walk(settings.paths, exclude=own_files(settings.outputs.paths)):
        walked.see(found)
    return last[1] if walked.hexdigest() == last[0] else None


class _Saver:
    """Adds new results to the store, committing every few seconds (a crash loses no more)."""

    INTERVAL = 2.0

    def __init__(self, store: ResultStore | None) -> None:
        self.store = store
        self.last_commit = time.monotonic()

    def add(self, result: Result) -> None:
        if self.store is None or result.known:
            return
        self.store.add(result)
        if time.monotonic() - self.last_commit > self.INTERVAL:
            self.commit()

    def commit(self) -> None:
        if self.store is not None:
            self.store.commit()
            self.last_commit = time.monotonic()


def _known_first(
    images: Iterator[Candidate], store: ResultStore, labels: Labels, tiles: bool
) -> Iterator[Candidate | Result]:
    """Each image's stored result when it is still current, else the image itself."""
    for image in images:
        yield store.known(image, labels, tiles) or image


def _images(
    settings: ScanSettings, summary: Summary, fingerprint: _Fingerprint
) -> Iterator[Candidate]:
    """Images to classify; our own outputs, result store and locks are never taken for input."""
    for found in walk(settings.paths, exclude=own_files(settings.outputs.paths)):
        fingerprint.see(found)
        path, skip, stamp = found
        if skip:
            summary.add_skipped(skip)
        else:
            yield Candidate(path, stamp=stamp)
