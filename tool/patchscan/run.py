"""What a scan and a watch share: their common settings, and the model, result store and label
rule a run opens before it classifies anything.

The two drivers (scan.py, watch.py) are siblings built on this; neither imports the other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patchscan.atomic import remove_stale_temps
from patchscan.errors import UsageError
from patchscan.lock import hold, lock_paths
from patchscan.model import Model, ModelInfo, file_sha256, read_info, resolve_model
from patchscan.report.outputs import Outputs
from patchscan.report.summary import Summary
from patchscan.results import Labels
from patchscan.store import ResultStore, open_store, store_files, store_path


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The settings a scan and a watch have in common."""

    model: str = "idc"  # a bundled model's name or an .onnx file
    csv: Path | None = None
    json: Path | None = None
    report: Path | None = None
    threshold: float | None = None  # None: the model's own
    batch_size: int | None = None  # images per worker task; None: by size
    workers: int = 0  # worker processes; 0 = one per CPU this process may use
    review_error: float | None = None  # the review band's error-rate target; None: the model's

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.csv, self.json, self.report)

    def check(self) -> None:
        """Usage errors found before any work starts (exit code 2)."""
        self.outputs.check()
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold {self.threshold}: must be between 0 and 1")
        if self.review_error is not None and not 0.0 < self.review_error < 1.0:
            raise UsageError(f"--review-error {self.review_error}: must be between 0 and 1")

    def new_summary(self, run: Opened, command_line: str, started: str | None = None) -> Summary:
        """An empty summary of a run with these settings."""
        return Summary.start(
            run.model,
            run.labels,
            command_line,
            self.as_dict(run.labels),
            keep_tiles=self.report is not None,
            started=started,
        )

    def labels(self, info: ModelInfo) -> Labels:
        """The run's label rule: the model's, moved by --threshold and --review-error."""
        return Labels.of(info, self.threshold, self.review_error)

    def worker_count(self) -> int:
        return self.workers or available_cpus()

    def as_dict(self, labels: Labels) -> dict[str, Any]:
        """JSON-ready values for the report's provenance, with the threshold actually used."""
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        for key, value in values.items():
            if isinstance(value, tuple):
                values[key] = [str(p) for p in value]
        values["threshold"] = labels.threshold
        return values


def available_cpus() -> int:
    """The CPUs this process may run on (affinity), not all the machine has."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Opened:
    """A run's model, its result store (None when no output is named) and its label rule."""

    model: Model
    store: ResultStore | None
    labels: Labels


@contextlib.contextmanager
def open_run(settings: RunSettings, command_line: str, force: bool = False) -> Iterator[Opened]:
    """Resolve the model, take the outputs (lock.py: one run at a time, or UsageError naming the
    one that has them), clear what a killed run left beside them, open the store beside them,
    build the label rule.

    The store remembers the model's metadata, so a rescan that finds everything known never
    reads more of the model file than its hash; `force` reads it again.
    """
    path = resolve_model(settings.model)
    sha256 = file_sha256(path)
    outputs = settings.outputs.paths
    if not outputs:
        model = Model(path, sha256, read_info(path))
        yield Opened(model, None, settings.labels(model.info))
        return
    with hold(outputs, command_line), open_store(store_path(outputs), sha256) as store:
        remove_stale_temps(outputs)  # only now: a live run's temp file is never ours to remove
        known = None if force else store.model_info()
        info = known or read_info(path)
        if known is None:
            store.remember_model(info)
        yield Opened(Model(path, sha256, info), store, settings.labels(info))


def own_files(outputs: tuple[Path, ...]) -> frozenset[Path]:
    """A run's outputs and what it keeps beside them (the store and SQLite's companions, the
    locks), as real paths: never taken for input."""
    if not outputs:
        return frozenset()
    own = {*outputs, *store_files(store_path(outputs)), *lock_paths(outputs)}
    return frozenset(Path(os.path.realpath(p)) for p in own)
