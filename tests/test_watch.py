"""patchscan watch with a real watchdog observer: landing files, bursts, restarts, signals."""

from __future__ import annotations

import contextlib
import csv
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

from conftest import SAMPLES
from patchscan import watch as watch_module
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
    assert seen == {Path(r["path"]).name: r["label"] for r in rows(out / "r.csv")}


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


def test_files_that_raise_no_event_are_found_by_the_rescan(
    dirs: tuple[Path, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module._Inbox, "on_any_event", lambda self, event: None)
    folder, out = dirs
    with watching(folder, out, tiny_model, rescan=0.5):
        drop(sample_patches(1)[0], folder / "quiet.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1)


def test_polling_for_network_shares(dirs: tuple[Path, Path], tiny_model: Path) -> None:
    folder, out = dirs
    with watching(folder, out, tiny_model, poll=0.2):
        drop(sample_patches(1)[0], folder / "share.png")
        wait_for(lambda: len(rows(out / "r.csv")) == 1)


def start(folder: Path, out: Path, tiny_model: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "patchscan", "watch", str(folder), "--model", str(tiny_model)]
    command += ["--csv", str(out / "r.csv"), "--settle", str(SETTLE)]
    with open(out / "stderr.txt", "ab") as stderr:  # the child keeps its own copy
        return subprocess.Popen(command, stderr=stderr)


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
    for index, source in enumerate(sources[250:]):  # landed while nobody was watching
        drop(source, folder / f"b{index:03d}.png")
    process = start(folder, out, tiny_model)
    try:
        wait_for(lambda: len(rows(out / "r.csv")) == 300)
        time.sleep(3 * SETTLE)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
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
    wait_for(lambda: len(rows(out / "r.csv")) == 30)
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0
    stderr = (out / "stderr.txt").read_text()
    assert "Traceback" not in stderr and "stopped; 30 files classified" in stderr
