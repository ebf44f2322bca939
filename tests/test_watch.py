"""patchscan watch with a real watchdog observer: landing files, bursts, restarts, signals."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from conftest import SAMPLES, group_members, kill_group
from patchscan import watch as watch_module
from patchscan.imaging import load_rgb, to_model_input
from patchscan.model import Model, Session, bundled_models
from patchscan.report.csv_writer import COLUMNS
from patchscan.results import Result
from patchscan.watch import Watcher, WatchSettings

SETTLE = 0.3
TINY_CONTEXT = Path(__file__).parent / "data" / "tiny_context.onnx"


def rows(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.exists():
        return []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        assert header is None or tuple(header) == COLUMNS
        lines = list(reader)
    assert all(len(line) == len(COLUMNS) for line in lines), "a torn row"
    return [dict(zip(COLUMNS, line, strict=True)) for line in lines]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextlib.contextmanager
def watching(
    folder: Path,
    out: Path,
    tiny_model: Path,
    on_result: Callable[[Result], None] = lambda result: None,
    **options: object,
) -> Iterator[Watcher]:
    settings = WatchSettings(
        folder=folder,
        model=str(tiny_model),
        csv=out / "r.csv",
        json=out / "r.json",
        settle=SETTLE,
        **options,  # type: ignore[arg-type]
    )
    stop = threading.Event()
    watcher = Watcher(settings, stop, on_result=on_result)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            watcher.run()
        except BaseException as exc:  # surfaced in the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield watcher
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and not failures, failures


def sample_patches(count: int) -> list[Path]:
    return sorted(SAMPLES.glob("*/*/*.png"))[:count]


def drop(source: Path, target: Path) -> None:
    """Land a file the careful way: written under a temporary name, renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    shutil.copy(source, part)
    part.rename(target)


@pytest.fixture(autouse=True)
def quick_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The idle loop wakes every 0.1 s instead of every second: each test waits less."""
    monkeypatch.setattr(watch_module, "IDLE_WAKE", 0.1)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


def test_existing_files_first_then_each_new_one(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with watching(patches, out, tiny_model):
        wait_for(lambda: len(rows(out / "r.csv")) == 20)
        new = patches / "9035" / "0" / "9035_idx5_x1_y1_class0.png"
        drop(sample_patches(1)[0], new)
        wait_for(lambda: len(rows(out / "r.csv")) == 21)
    csv_rows = rows(out / "r.csv")
    assert len({r["path"] for r in csv_rows}) == 21
    assert all(r["status"] == "ok" and not r["path"].endswith(".part") for r in csv_rows)
    assert '"files": 21' in (out / "r.json").read_text()  # the report caught up on stopping


def test_the_live_count_sees_the_labels_the_outputs_give(dirs: tuple[Path, Path]) -> None:
    """Under a slide-context model a black patch amid white ones is IDC in the CSV; the window's
    live count (on_result) must say so too, not the patch's own probability."""
    folder, out = dirs
    for i in range(3):
        for j in range(3):
            name = f"8863_idx5_x{1 + 50 * i}_y{1 + 50 * j}_class1.png"
            grey = 0 if (i, j) == (1, 1) else 255
            Image.new("RGB", (50, 50), (grey, grey, grey)).save(folder / name)
    seen: dict[str, str] = {}
    with watching(folder, out, TINY_CONTEXT, lambda r: seen.update({Path(r.path).name: r.label})):
        wait_for(lambda: len(seen) == 9)
    assert seen["8863_idx5_x51_y51_class1.png"] == "IDC"
    csv_rows = rows(out / "r.csv")
    assert seen == {Path(r["path"]).name: r["label"] for r in csv_rows}
    assert [r["path"] for r in csv_rows] == sorted(str(p) for p in folder.iterdir())  # in order


def test_a_watch_labels_slide_context_scores_at_the_given_threshold(
    dirs: tuple[Path, Path],
) -> None:
    """--threshold 0.82 splits the 3x3 slide's context scores (0.8 corners and centre, 0.857
    edges): the model's own 0.5 would call all nine IDC."""
    folder, out = dirs
    for i in range(3):
        for j in range(3):
            grey = 0 if (i, j) == (1, 1) else 255
            name = f"8863_idx5_x{1 + 50 * i}_y{1 + 50 * j}_class1.png"
            Image.new("RGB", (50, 50), (grey, grey, grey)).save(folder / name)
    with watching(folder, out, TINY_CONTEXT, threshold=0.82):
        wait_for(lambda: len(rows(out / "r.csv")) == 9)
    for row in rows(out / "r.csv"):
        name = Path(row["path"]).name
        edge = name.count("_x51_") + name.count("_y51_") == 1
        assert row["label"] == ("IDC" if edge else "non-IDC"), name
    assert json.loads((out / "r.json").read_text())["counts"] == {"non-IDC": 5, "IDC": 4}


def test_a_slowly_written_file_is_classified_once_whole(
    dirs: tuple[Path, Path], tiny_model: Path
) -> None:
    folder, out = dirs
    white = out / "white.png"
    Image.new("RGB", (50, 50), (255, 255, 255)).save(white)
    data = white.read_bytes()
    target = folder / "slow.png"
    with watching(folder, out, tiny_model):
        with open(target, "wb") as handle:
            for start in range(0, len(data), len(data) // 4 + 1):
                handle.write(data[start : start + len(data) // 4 + 1])
                handle.flush()
                time.sleep(SETTLE * 0.6)  # pauses shorter than the settle time
                assert rows(out / "r.csv") == []  # never scored half an image
        wait_for(lambda: len(rows(out / "r.csv")) == 1)
    (row,) = rows(out / "r.csv")
    assert row["status"] == "ok" and float(row["probability"]) == pytest.approx(1.0)


def test_a_burst_of_1000_files_into_a_new_subfolder(
    dirs: tuple[Path, Path], tiny_model: Path
) -> None:
    folder, out = dirs
    sources = sample_patches(100)
    with watching(folder, out, tiny_model):
        burst = folder / "run-7"
        burst.mkdir()
        for index in range(1000):
            shutil.copy(sources[index % 100], burst / f"p{index:04d}_x{index}_y0.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1000, timeout=60)
    assert len({r["path"] for r in rows(out / "r.csv")}) == 1000


def test_a_changed_file_supersedes_its_row(dirs: tuple[Path, Path], tiny_model: Path) -> None:
    folder, out = dirs
    image = folder / "a.png"
    Image.new("RGB", (50, 50), (0, 0, 0)).save(image)
    with watching(folder, out, tiny_model):
        wait_for(lambda: len(rows(out / "r.csv")) == 1)
        Image.new("RGB", (50, 50), (255, 255, 255)).save(out / "b.png")
        os.replace(out / "b.png", image)
        wait_for(lambda: [r["probability"] for r in rows(out / "r.csv")] == ["1.000000"])


def test_an_undecodable_file_gets_one_error_row(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "RETRY_FOR", 1.0)
    folder, out = dirs
    (folder / "broken.png").write_bytes(b"this is not a png")
    with watching(folder, out, tiny_model):
        wait_for(lambda: len(rows(out / "r.csv")) == 1)
        time.sleep(3 * SETTLE)
    (row,) = rows(out / "r.csv")
    assert row["status"] == "error" and "not an image" in row["error"]


def test_own_outputs_and_temporary_names_are_not_classified(
    dirs: tuple[Path, Path], tiny_model: Path
) -> None:
    folder, _ = dirs
    for name in ("~lock.png", ".hidden.png", "upload.png.part", "copy.tmp"):
        shutil.copy(sample_patches(1)[0], folder / name)
    with watching(folder, folder, tiny_model):
        drop(sample_patches(1)[0], folder / "real.png")
        wait_for(lambda: len(rows(folder / "r.csv")) == 1)
        time.sleep(3 * SETTLE)  # long enough for its own CSV/JSON/store writes to come back
    assert [Path(r["path"]).name for r in rows(folder / "r.csv")] == ["real.png"]


class DeafObserver(threading.Thread):
    """An observer that runs and never delivers an event (a share where inotify sees nothing)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()

    def schedule(self, *args: object, **kwargs: object) -> None:
        pass

    def run(self) -> None:
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def started(out: Path) -> Callable[[], bool]:
    """The first loop has run (its report is written): the first walk is over, the observer on."""
    return lambda: (out / "r.json").exists()


def test_files_that_raise_no_event_are_found_by_the_rescan(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file lands after the first walk, and no event ever mentions it: only the periodic
    walk of the whole folder can find it."""
    monkeypatch.setattr(watch_module, "Observer", DeafObserver)
    monkeypatch.setattr(watch_module._Inbox, "on_any_event", lambda self, event: None)
    folder, out = dirs
    with watching(folder, out, tiny_model, rescan=0.5):
        wait_for(started(out))
        drop(sample_patches(1)[0], folder / "quiet.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1, timeout=10)


def test_polling_for_network_shares(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --poll, a PollingObserver finds the file: native events see nothing here, and the
    next walk of the whole folder is a minute away."""
    monkeypatch.setattr(watch_module, "Observer", DeafObserver)
    folder, out = dirs
    with watching(folder, out, tiny_model, poll=0.2):
        wait_for(started(out))
        drop(sample_patches(1)[0], folder / "share.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1, timeout=10)


def test_a_dead_observer_is_restarted(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first observer dies at once (a network share went away); the loop starts a new one,
    whose events then find a file that lands."""
    made: list[object] = []

    def observer() -> object:
        made.append(DeafObserver() if not made else RealObserver())
        if len(made) == 1:
            made[0].stop()  # type: ignore[attr-defined]  # its thread ends as soon as it starts
        return made[-1]

    from watchdog.observers import Observer as RealObserver

    monkeypatch.setattr(watch_module, "Observer", observer)
    folder, out = dirs
    with watching(folder, out, tiny_model):
        wait_for(lambda: len(made) >= 2, timeout=10)
        wait_for(started(out))
        drop(sample_patches(1)[0], folder / "after.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1, timeout=10)
        assert len(made) == 2 and made[1].is_alive()  # type: ignore[attr-defined]


def test_without_inotify_it_falls_back_to_polling(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inotify watch limit reached: the watch polls instead (every 2 s) and still finds a
    file that lands, long before the next walk of the whole folder."""

    class NoInotify(DeafObserver):
        def start(self) -> None:
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watch_module, "Observer", NoInotify)
    folder, out = dirs
    with watching(folder, out, tiny_model):
        wait_for(started(out))
        drop(sample_patches(1)[0], folder / "polled.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1, timeout=10)


def test_a_file_that_does_not_decode_yet_is_retried_not_an_error(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half a PNG whose writer pauses longer than --settle: retried until RETRY_FOR, so when
    the rest arrives it gets one ok row, and never an error row or an error result."""
    monkeypatch.setattr(watch_module, "RETRY_FOR", 3.0)
    folder, out = dirs
    data = sample_patches(1)[0].read_bytes()
    seen: list[Result] = []
    with watching(folder, out, tiny_model, on_result=seen.append):
        wait_for(started(out))
        target = folder / "stalled.png"
        target.write_bytes(data[: len(data) // 2])
        time.sleep(5 * SETTLE)  # settled, and read (and failed) more than once by now
        assert rows(out / "r.csv") == [] and seen == []
        with open(target, "ab") as handle:
            handle.write(data[len(data) // 2 :])
        wait_for(lambda: len(rows(out / "r.csv")) == 1, timeout=10)
    (row,) = rows(out / "r.csv")
    assert row["status"] == "ok" and [r.ok for r in seen] == [True]


def test_an_undecodable_file_is_an_error_only_after_retry_for(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "RETRY_FOR", 1.5)
    folder, out = dirs
    with watching(folder, out, tiny_model):
        wait_for(started(out))
        landed = time.monotonic()
        (folder / "broken.png").write_bytes(b"this is not a png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1, timeout=10)
        assert time.monotonic() - landed >= 1.5
    (row,) = rows(out / "r.csv")
    assert row["status"] == "error" and "not an image" in row["error"]


def test_the_default_retry_is_10_seconds() -> None:
    """README: a file that does not decode is retried for 10 s, then gets one error row."""
    assert watch_module.RETRY_FOR == 10.0


def report_files(out: Path) -> int | None:
    try:
        return json.loads((out / "r.json").read_text())["files"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_reports_are_rebuilt_while_watching(dirs: tuple[Path, Path], tiny_model: Path) -> None:
    folder, out = dirs
    with watching(folder, out, tiny_model, report_every=0.5):
        wait_for(lambda: report_files(out) == 0)
        drop(sample_patches(1)[0], folder / "one.png")
        wait_for(lambda: report_files(out) == 1, timeout=10)  # not only when stopped


def test_reports_are_rebuilt_at_most_every_report_every_seconds(
    dirs: tuple[Path, Path], tiny_model: Path
) -> None:
    """A busy folder must not rewrite a large HTML report after every batch."""
    folder, out = dirs
    with watching(folder, out, tiny_model, report_every=60.0):
        wait_for(lambda: report_files(out) == 0)
        drop(sample_patches(1)[0], folder / "one.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1)
        time.sleep(3 * SETTLE)
        assert report_files(out) == 0  # the CSV has the row; the report waits its turn
    assert report_files(out) == 1  # and is brought up to date on stopping


def test_watch_labels_at_the_given_threshold(dirs: tuple[Path, Path], tiny_model: Path) -> None:
    """--threshold applies to what a watch classifies, with P == threshold positive: grey 108
    (P 0.42) is IDC at its own P, where the model's 0.5 would make it non-IDC."""
    folder, out = dirs
    for name, grey in (("white.png", 255), ("grey.png", 108), ("dark.png", 0)):
        Image.new("RGB", (50, 50), (grey,) * 3).save(folder / name)
    pixels = to_model_input(load_rgb(folder / "grey.png", (8, 8))[None])
    probability = float(
        Session(Model.open(tiny_model)).predict(pixels)[0]
    )  # exactly as a worker does
    with watching(folder, out, tiny_model, threshold=probability):
        wait_for(lambda: len(rows(out / "r.csv")) == 3)
    got = {Path(r["path"]).name: (float(r["probability"]), r["label"]) for r in rows(out / "r.csv")}
    assert got["grey.png"] == (pytest.approx(probability, abs=1e-6), "IDC")
    assert got["white.png"][1] == "IDC" and got["dark.png"][1] == "non-IDC"


def start(folder: Path, out: Path, tiny_model: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "patchscan", "watch", str(folder), "--model", str(tiny_model)]
    command += ["--csv", str(out / "r.csv"), "--settle", str(SETTLE)]
    with open(out / "stderr.txt", "ab") as stderr:  # the child keeps its own copy
        # Its own process group: what it leaves behind (worker processes) can be found and ended.
        return subprocess.Popen(command, stderr=stderr, start_new_session=True)


def test_kill_9_and_restart_neither_redoes_nor_loses_a_file(
    dirs: tuple[Path, Path], tiny_model: Path
) -> None:
    folder, out = dirs
    sources = sample_patches(300)
    process = start(folder, out, tiny_model)
    try:
        for index, source in enumerate(sources[:250]):
            drop(source, folder / f"a{index:03d}.png")
        wait_for(lambda: len(rows(out / "r.csv")) > 0)
    finally:
        process.kill()
        process.wait()
        kill_group(process.pid)  # belt and braces: test_processes.py proves none is left
    for index, source in enumerate(sources[250:]):  # landed while nobody was watching
        drop(source, folder / f"b{index:03d}.png")
    process = start(folder, out, tiny_model)
    try:
        wait_for(lambda: len(rows(out / "r.csv")) == 300)
        time.sleep(3 * SETTLE)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        kill_group(process.pid)
    paths = [r["path"] for r in rows(out / "r.csv")]
    assert len(paths) == len(set(paths)) == 300


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_and_exit_0(
    dirs: tuple[Path, Path], tiny_model: Path, signum: int
) -> None:
    folder, out = dirs
    for index, source in enumerate(sample_patches(30)):
        drop(source, folder / f"p{index:02d}.png")
    process = start(folder, out, tiny_model)
    try:
        wait_for(lambda: len(rows(out / "r.csv")) == 30)
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
        # Its workers (and their resource tracker) end with it, within moments.
        deadline = time.monotonic() + 5
        while group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(process.pid) == []
    finally:
        kill_group(process.pid)
    stderr = (out / "stderr.txt").read_text()
    assert "Traceback" not in stderr and "stopped; 30 files classified" in stderr


def test_the_watch_says_how_many_new_calls_need_review(dirs: tuple[Path, Path]) -> None:
    """Under a model with a review band (idc), each batch's line counts the doubtful calls it
    added, as the CSV's review column does."""
    folder, out = dirs
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("patchscan.watch")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        for source in sorted(SAMPLES.glob("9035/*/*.png")):  # 236 patches, 51 IDC
            drop(source, folder / "9035" / source.name)
        with watching(folder, out, bundled_models()["idc"]):  # all there: one slide, at once
            wait_for(lambda: len(rows(out / "r.csv")) == 236)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    reviews = sum(row["review"] == "yes" for row in rows(out / "r.csv"))
    said = [int(m.split(", ")[-1].split()[0]) for m in lines if m.endswith("to review")]
    assert reviews > 0 and sum(said) == reviews
