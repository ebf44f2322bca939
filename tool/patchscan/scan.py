"""A whole scan: discover → classify → stream the CSV → write the JSON and HTML summaries.

Ctrl-C stops between batches; everything classified by then is written as if the scan had ended.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from patchscan import __version__
from patchscan.discover import discover
from patchscan.errors import UsageError
from patchscan.model import ModelSession, resolve_model
from patchscan.pipeline import Result, classify
from patchscan.report.csv_writer import open_csv
from patchscan.report.html_writer import write_html
from patchscan.report.json_writer import write_json
from patchscan.report.summary import Provenance, Summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings:
    paths: tuple[Path, ...]
    model: str = "idc"
    csv: Path | None = None  # None: CSV to stdout unless json or report is given
    json: Path | None = None
    report: Path | None = None
    threshold: float | None = None  # None: the model's own
    batch_size: int = 256
    workers: int = 0  # decode threads; 0 = one per core

    @property
    def outputs(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.csv, self.json, self.report) if p is not None)


@dataclass(frozen=True)
class ScanOutcome:
    summary: Summary
    interrupted: bool

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.summary.error_count else 0


def run_scan(
    settings: ScanSettings,
    command_line: str,
    on_result: Callable[[Result], None] = lambda result: None,
) -> ScanOutcome:
    check_settings(settings)
    session = ModelSession(resolve_model(settings.model))
    threshold = session.info.threshold if settings.threshold is None else settings.threshold
    summary = Summary(
        Provenance(
            tool_version=__version__,
            model=session.info,
            model_path=session.path,
            model_sha256=session.sha256,
            threshold=threshold,
            command_line=command_line,
            settings=_settings_dict(settings, threshold),
            started=_now(),
        )
    )
    interrupted = False
    to_stdout = not settings.outputs
    with open_csv(settings.csv) if settings.csv or to_stdout else _no_csv() as csv_out:
        results = classify(
            _images(settings, summary),
            session,
            threshold,
            settings.batch_size,
            settings.workers or os.cpu_count() or 1,
        )
        try:
            for result in results:
                summary.add(result)
                if csv_out is not None:
                    csv_out.write(result)
                on_result(result)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: writing the %d results done so far", summary.classified)
        finally:
            results.close()
    summary.provenance.finished = _now()
    summary.provenance.interrupted = interrupted
    if settings.json:
        write_json(summary, settings.json)
    if settings.report:
        write_html(summary, settings.report)
    return ScanOutcome(summary, interrupted)


def check_settings(settings: ScanSettings) -> None:
    """Usage errors found before any work starts (exit code 2)."""
    for path in settings.paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    for output in settings.outputs:
        if output.is_dir():
            raise UsageError(f"{output}: is a folder, expected a file name")
        if not output.parent.is_dir():
            raise UsageError(f"{output}: folder {output.parent} does not exist")
    if settings.threshold is not None and not 0.0 <= settings.threshold <= 1.0:
        raise UsageError(f"--threshold {settings.threshold}: must be between 0 and 1")


def _images(settings: ScanSettings, summary: Summary) -> Iterator[Path]:
    outputs = frozenset(Path(os.path.realpath(p)) for p in settings.outputs)
    for candidate in discover(settings.paths, exclude=outputs):
        if candidate.skip:
            summary.add_skipped(candidate.skip)
        else:
            yield candidate.path


@contextlib.contextmanager
def _no_csv() -> Iterator[None]:
    yield None


def _settings_dict(settings: ScanSettings, threshold: float) -> dict[str, object]:
    values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    values["paths"] = [str(p) for p in settings.paths]
    values["threshold"] = threshold
    return values


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
