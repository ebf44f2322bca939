"""A whole scan: discover → classify → stream the CSV → write the JSON and HTML summaries.

With outputs named, results are remembered in a result store beside them (store.py), so a rescan
only classifies new or changed files, and a rescan of a folder where nothing changed (same files,
sizes and mtimes, same model and settings, outputs as the last scan left them) only walks the
folder and leaves the outputs alone. Ctrl-C stops between batches; everything classified by then
is written as if the scan had ended, and is remembered for the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchscan import __version__
from patchscan.discover import Candidate, Found, walk
from patchscan.errors import UsageError
from patchscan.model import ModelInfo, ModelSession, file_sha256, resolve_model
from patchscan.pipeline import Result, Workers, classify, context_threshold, with_context
from patchscan.report.csv_writer import open_csv
from patchscan.store import ResultStore, Tally, open_store, store_files, store_path

if TYPE_CHECKING:
    from patchscan.report.summary import Summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings:
    paths: tuple[Path, ...]
    model: str = "idc"
    csv: Path | None = None  # None: CSV to stdout unless json or report is given
    json: Path | None = None
    report: Path | None = None
    threshold: float | None = None  # None: the model's own
    batch_size: int | None = None  # images per worker task and onnxruntime call; None: by size
    workers: int = 0  # worker processes; 0 = one per core
    force: bool = False  # re-classify files the result store already knows

    @property
    def outputs(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.csv, self.json, self.report) if p is not None)


@dataclass(frozen=True)
class ScanOutcome:
    counts: dict[str, int]  # classified images per label
    errors: int
    interrupted: bool = False
    unchanged: bool = False  # nothing changed since the last complete scan: outputs left alone

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
) -> ScanOutcome:
    check_settings(settings)
    model_path = resolve_model(settings.model)
    sha256 = file_sha256(model_path)
    own_store = store_path(settings.outputs) if settings.outputs else None
    with open_store(own_store, sha256) if own_store else contextlib.nullcontext() as store:
        known_info = store.model_info() if store and not settings.force else None
        session = ModelSession(model_path, info=known_info, sha256=sha256)
        if store and known_info is None:
            store.remember_model(session.info)
        return _scan(settings, command_line, on_result, session, store)


def _scan(
    settings: ScanSettings,
    command_line: str,
    on_result: Callable[[Result], None],
    session: ModelSession,
    store: ResultStore | None,
) -> ScanOutcome:
    threshold = session.info.threshold if settings.threshold is None else settings.threshold
    if store is not None and not settings.force:
        walked = _Fingerprint(settings, session.sha256, threshold)
        last = _unchanged_since_last_scan(settings, store, walked)
        if last is not None:
            return ScanOutcome(last["counts"], last["errors"], unchanged=True)
    return _classify_and_write(settings, command_line, on_result, session, store, threshold)


def _classify_and_write(
    settings: ScanSettings,
    command_line: str,
    on_result: Callable[[Result], None],
    session: ModelSession,
    store: ResultStore | None,
    threshold: float,
) -> ScanOutcome:
    summary = new_summary(session, threshold, command_line, settings)
    fingerprint = _Fingerprint(settings, session.sha256, threshold)
    interrupted = False
    to_stdout = not settings.outputs
    saver = _Saver(store)
    with (
        Workers(settings.workers or os.cpu_count() or 1) as workers,
        open_csv(settings.csv)
        if settings.csv or to_stdout
        else contextlib.nullcontext() as csv_out,
    ):
        images = _images(settings, summary, store.path if store else None, fingerprint)
        jobs: Iterator[Candidate | Result] = (
            images
            if store is None or settings.force or not store.has_results()
            else _known_first(images, store, session.info, threshold, summary.keep_tiles)
        )
        classified = classify(
            jobs, session, threshold, settings.batch_size, workers, summary.keep_tiles
        )
        results = with_context(classified, session.info, settings.threshold)
        try:
            for result in results:
                summary.add(result)
                if csv_out is not None:
                    csv_out.write(result)
                saver.add(result)
                on_result(result)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: writing the %d results done so far", summary.classified)
        finally:
            results.close()
            classified.close()
            saver.commit()
    summary.provenance.finished = now()
    summary.provenance.interrupted = interrupted
    # The writers are imported only now (they bring numpy and PIL): a CSV-only scan never
    # needs them, and they would hold up the workers' start.
    if settings.json:
        from patchscan.report.json_writer import write_json

        write_json(summary, settings.json)
    if settings.report:
        from patchscan.report.html_writer import write_html

        write_html(summary, settings.report)
    tally: Tally = {"counts": dict(summary.counts), "errors": summary.error_count}
    if store is not None and not interrupted:
        store.remember_scan(fingerprint.hexdigest(), settings.outputs, tally)
    return ScanOutcome(tally["counts"], tally["errors"], interrupted)


class _Fingerprint:
    """What a scan's outputs depend on: the tool, the model, the threshold, the paths asked for
    and where the outputs go, and every file met on the walk with its (size, mtime_ns)."""

    def __init__(self, settings: ScanSettings, model_sha256: str, threshold: float) -> None:
        given = [[os.path.abspath(p) for p in ps] for ps in (settings.paths, settings.outputs)]
        self._hash = hashlib.blake2b(
            json.dumps([__version__, model_sha256, threshold, given]).encode()
        )

    def see(self, found: Found) -> None:
        path, skip, stamp = found
        self._hash.update(f"{path}\0{skip}\0{stamp}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _unchanged_since_last_scan(
    settings: ScanSettings, store: ResultStore, walked: _Fingerprint
) -> Tally | None:
    """The last scan's tally when a walk finds exactly what it found (checked only when the
    outputs are still as that scan left them: otherwise they are rewritten anyway)."""
    last = store.last_scan(settings.outputs)
    if last is None:
        return None
    for found in walk(settings.paths, exclude=_own_files(settings, store.path)):
        walked.see(found)
    return last[1] if walked.hexdigest() == last[0] else None


def new_summary(
    session: ModelSession, threshold: float, command_line: str, settings: Any
) -> Summary:
    """An empty summary whose provenance records `settings` (a scan's or a watch's)."""
    from patchscan.report.summary import Provenance, Summary

    provenance = Provenance(
        tool_version=__version__,
        model=session.info,
        model_path=session.path,
        model_sha256=session.sha256,
        threshold=threshold,
        command_line=command_line,
        settings=_settings_dict(settings, threshold),
        started=now(),
        context_threshold=context_threshold(session.info, settings.threshold),
    )
    return Summary(provenance, keep_tiles=settings.report is not None)


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
    images: Iterator[Candidate],
    store: ResultStore,
    info: ModelInfo,
    threshold: float,
    tiles: bool,
) -> Iterator[Candidate | Result]:
    """Each image's stored result when it is still current, else the image itself."""
    for image in images:
        yield store.known(image, info, threshold, tiles) or image


def check_settings(settings: ScanSettings) -> None:
    """Usage errors found before any work starts (exit code 2)."""
    for path in settings.paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    check_outputs(settings.outputs)
    if settings.threshold is not None and not 0.0 <= settings.threshold <= 1.0:
        raise UsageError(f"--threshold {settings.threshold}: must be between 0 and 1")


def check_outputs(outputs: tuple[Path, ...]) -> None:
    for output in outputs:
        if output.is_dir():
            raise UsageError(f"{output}: is a folder, expected a file name")
        if not output.parent.is_dir():
            raise UsageError(f"{output}: folder {output.parent} does not exist")


def _images(
    settings: ScanSettings, summary: Summary, store: Path | None, fingerprint: _Fingerprint
) -> Iterator[Candidate]:
    """Images to classify; our own outputs and result store are never taken for input."""
    for found in walk(settings.paths, exclude=_own_files(settings, store)):
        fingerprint.see(found)
        path, skip, stamp = found
        if skip:
            summary.add_skipped(skip)
        else:
            yield Candidate(path, stamp=stamp)


def _own_files(settings: ScanSettings, store: Path | None) -> frozenset[Path]:
    own = set(settings.outputs) | (store_files(store) if store else set())
    return frozenset(Path(os.path.realpath(p)) for p in own)


def _settings_dict(settings: Any, threshold: float) -> dict[str, object]:
    """A settings dataclass as JSON-ready values, with the threshold actually used."""
    values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    if "paths" in values:
        values["paths"] = [str(p) for p in values["paths"]]
    values["threshold"] = threshold
    return values


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
