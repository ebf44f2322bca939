"""patchscan watch: classify what lands in a lab folder, once it has finished landing.

Events (watchdog) only say where to look. A file is classified once its (size, mtime_ns) has
stayed the same for `settle` seconds and it decodes; a periodic walk of the whole folder catches
whatever events missed (bursts, network shares, a dead observer). Results go to the result store
first (SQLite, committed per batch), then to the CSV (appended in one write, or rewritten
atomically when a changed file supersedes its row), and the JSON/HTML reports are rebuilt from
the store at most every few seconds. After a crash, the store is the truth: the CSV is rewritten
from it on start, and whatever was not committed is simply classified again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from patchscan.discover import Candidate, Stamp, discover, is_image_name, stamp_of
from patchscan.errors import UsageError
from patchscan.pipeline import Workers, classify, with_context
from patchscan.report.csv_writer import append_rows, open_csv
from patchscan.report.summary import Summary, timestamp
from patchscan.results import Result
from patchscan.run import Opened, RunSettings, open_run, own_files
from patchscan.store import ResultStore

log = logging.getLogger(__name__)

TICK = 0.1  # s between checks while files are landing
IDLE_WAKE = 1.0  # s: the longest the loop sleeps, so a stop request is seen promptly
RETRY_FOR = 10.0  # s a settled file that does not decode is retried before it is an error


@dataclass(frozen=True)
class WatchSettings(RunSettings):
    folder: Path
    _: KW_ONLY
    settle: float = 1.0  # s a file's size and mtime must stay unchanged
    poll: float | None = None  # s between polls (network shares); None = native events
    rescan: float = 60.0  # s between walks of the whole folder
    report_every: float = 5.0  # s: the reports are rebuilt at most this often

    def check(self) -> None:
        if not self.folder.is_dir():
            raise UsageError(f"{self.folder}: not a folder")
        if not self.outputs.paths:
            raise UsageError(
                "watch needs --csv, --json or --report (its state is kept beside them)"
            )
        super().check()
        for name, value in (("--settle", self.settle), ("--rescan", self.rescan)):
            if value <= 0:
                raise UsageError(f"{name} {value}: must be positive")


@dataclass
class _Landing:
    """A file seen arriving: its stamp, since when it has had it, since when it has been seen."""

    stamp: Stamp
    since: float
    first_seen: float


class _Inbox(FileSystemEventHandler):
    """Every event's path goes into a queue; the watch loop decides what it means."""

    def __init__(self, paths: queue.SimpleQueue[str]) -> None:
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("created", "modified", "moved", "closed"):
            target = event.dest_path if event.event_type == "moved" else event.src_path
            self.paths.put(os.fsdecode(target))


class Watcher:
    """One watch session; `run()` returns when `stop` is set, after saving everything."""

    def __init__(
        self,
        settings: WatchSettings,
        stop: threading.Event,
        command_line: str = "patchscan watch",
        on_result: Callable[[Result], None] = lambda result: None,
    ) -> None:
        settings.check()
        self.settings = dataclasses.replace(settings, folder=settings.folder.absolute())
        self.stop = stop
        self.command_line = command_line
        self.on_result = on_result
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.pending: dict[str, _Landing] = {}  # keyed by path as discovery gives it
        self.in_csv: set[str] = set()
        self.report_due = 0.0
        self.report_dirty = True
        self.classified = 0
        self.started = timestamp()

    def run(self) -> int:
        """Watch until stopped; returns how many files were classified in this session."""
        settings = self.settings
        self.own = own_files(settings.outputs.paths)
        with (
            open_run(settings, self.command_line) as run,
            Workers(settings.worker_count()) as workers,
        ):
            assert run.store is not None  # a watch always has outputs (check())
            self.workers: Workers = workers
            self.opened: Opened = run
            self.store: ResultStore = run.store
            self._rewrite_csv()  # the store is the truth: repairs a CSV torn by a crash
            self._walk()
            observer = self._start_observer()
            log.info("watching %s (settle %g s); Ctrl-C to stop", settings.folder, settings.settle)
            next_walk = time.monotonic() + settings.rescan
            try:
                while not self.stop.is_set():
                    self._collect_events(timeout=TICK if self.pending else IDLE_WAKE)
                    self._classify_settled()
                    if time.monotonic() >= next_walk or not observer.is_alive():
                        if not observer.is_alive():
                            log.warning("file observer stopped; restarting it")
                            observer = self._start_observer()
                        self._walk()
                        next_walk = time.monotonic() + settings.rescan
                    self._report(force=False)
            finally:
                observer.stop()
                observer.join(timeout=5)
                self._report(force=True)
        return self.classified

    # --- finding files -------------------------------------------------------------------------

    def _start_observer(self) -> BaseObserver:
        poll = self.settings.poll
        observer: BaseObserver = PollingObserver(timeout=poll) if poll else Observer()
        observer.schedule(_Inbox(self.events), str(self.settings.folder), recursive=True)
        try:
            observer.start()
        except OSError as exc:  # e.g. the inotify watch limit: polling still works
            log.warning("native file events unavailable (%s); polling every 2 s", exc)
            observer = PollingObserver(timeout=2.0)
            observer.schedule(_Inbox(self.events), str(self.settings.folder), recursive=True)
            observer.start()
        return observer

    def _walk(self, folder: Path | None = None) -> None:
        """Look at every image under `folder` (the watched one by default)."""
        for candidate in discover([folder or self.settings.folder], exclude=self.own):
            if not candidate.skip:
                self._consider(candidate.path, candidate.stamp)

    def _collect_events(self, timeout: float) -> None:
        try:
            path = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        seen = {path}
        while len(seen) < 100_000:
            try:
                seen.add(self.events.get_nowait())
            except queue.Empty:
                break
        for path in seen:
            if os.path.isdir(path):
                self._walk(Path(path))  # a folder moved in brings files no event will mention
            elif is_image_name(path) and Path(os.path.realpath(path)) not in self.own:
                self._consider(path, stamp_of(path))

    def _consider(self, path: str, stamp: Stamp | None) -> None:
        """Start (or restart) the settle clock of a file that is new or changed."""
        landing = self.pending.get(path)
        if stamp is None:  # gone again
            self.pending.pop(path, None)
        elif landing is not None:
            if landing.stamp != stamp:
                landing.stamp, landing.since = stamp, time.monotonic()
        elif self.store.stamp(path) != stamp:
            now = time.monotonic()
            self.pending[path] = _Landing(stamp, since=now, first_seen=now)

    # --- classifying -------------------------------------------------------------------------

    def _settled(self) -> list[Candidate]:
        now = time.monotonic()
        ready = []
        for path, landing in list(self.pending.items()):
            if now - landing.since < self.settings.settle:
                continue
            stamp = stamp_of(path)
            if stamp is None:
                del self.pending[path]
            elif stamp != landing.stamp:
                landing.stamp, landing.since = stamp, now
            else:
                ready.append(Candidate(path, stamp=stamp))
        return sorted(ready, key=lambda c: c.path)

    def _classify_settled(self) -> None:
        ready = self._settled()
        if not ready:
            return
        done: list[Result] = []
        run, batch_size = self.opened, self.settings.batch_size
        tiles = self.settings.report is not None
        results = classify(ready, run.model, run.labels, batch_size, self.workers, tiles)
        for result in results:
            landing = self.pending.get(result.path)
            if landing is None or landing.stamp != result.stamp:
                continue  # changed while it was being read: it will settle again
            if result.error and time.monotonic() - landing.first_seen < RETRY_FOR:
                landing.since = time.monotonic()  # maybe still landing: look again later
                continue
            del self.pending[result.path]
            self.store.add(result)
            done.append(result)
        if not done:
            return
        self.store.commit()  # durable before any output mentions it
        self._update_csv(done)
        reported = self._as_reported(done)
        for result in reported:
            self.on_result(result)
        self.classified += len(done)
        self.report_dirty = True
        reviews = sum(result.review for result in reported)
        review = f", {reviews:,} to review" if reviews else ""
        log.info("classified %d (%d this session)%s", len(done), self.classified, review)

    # --- outputs -----------------------------------------------------------------------------

    def _current(self) -> Iterator[Result]:
        run = self.opened
        stored = self.store.current(run.labels, self.settings.folder)
        return with_context(stored, run.model.info.context, run.labels)

    def _as_reported(self, done: list[Result]) -> list[Result]:
        """`done` labelled as the CSV and report label them: by slide context, where the model
        has one, from the store that now holds their neighbours too."""
        if not self.opened.model.info.context:
            return done
        paths = {result.path for result in done}
        return [result for result in self._current() if result.path in paths]

    def _rewrite_csv(self) -> None:
        if self.settings.csv is None:
            return
        self.in_csv = set()
        with open_csv(self.settings.csv) as out:
            for result in self._current():
                out.write(result)
                self.in_csv.add(result.path)

    def _update_csv(self, done: list[Result]) -> None:
        if self.settings.csv is None:
            return
        if self.opened.model.info.context or any(result.path in self.in_csv for result in done):
            # A changed file's old row is superseded, not duplicated; with slide context, a new
            # patch changes its neighbours' scores too.
            self._rewrite_csv()
        else:
            append_rows(self.settings.csv, done)
            self.in_csv.update(result.path for result in done)

    def _report(self, force: bool) -> None:
        settings = self.settings
        if not settings.outputs.summaries or not self.report_dirty:
            return
        if not force and time.monotonic() < self.report_due:
            return
        started = time.monotonic()
        settings.outputs.write(self._summary())
        self.report_dirty = False
        took = time.monotonic() - started
        self.report_due = time.monotonic() + max(settings.report_every, 2 * took)

    def _summary(self) -> Summary:
        summary = self.settings.new_summary(self.opened, self.command_line, self.started)
        for result in self._current():
            summary.add(result)
        summary.finish()
        return summary
