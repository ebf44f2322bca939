"""One writer per outputs: a second scan or watch on outputs in use is refused at once, naming
the holder, instead of both exiting 0 while one silently loses its rows; and what a killed run
left beside its outputs (temp files, the lock) never traps the next one."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from click.testing import CliRunner

from conftest import SAMPLES, descendants
from patchscan.cli import main

TINY = Path(__file__).parent / "data" / "tiny.onnx"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def paths_in(csv_path: Path) -> list[str]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def scan(folder: Path, *outputs: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["scan", str(folder), "--model", str(TINY), *outputs])
    return result.exit_code, result.stderr


def sample_folder(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for source in sorted(SAMPLES.glob("*/*/*.png"))[:count]:
        shutil.copy(source, folder / source.name)
    return folder


@contextlib.contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "patchscan", *args, "--model", str(TINY), "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()


def test_a_second_scan_on_the_same_csv_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """The first scan is held up by a FIFO named like an image (a worker waits in open())."""
    first = sample_folder(tmp_path / "first", 4)
    os.mkfifo(first / "stuck.png")
    out = tmp_path / "out"
    out.mkdir()
    live_temp = out / ".r.csv.abcd1234.tmp"  # a live run's temp file looks like a stale one
    args = ("scan", str(first), "--csv", str(out / "r.csv"), "--batch-size", "1")
    with running(*args) as holder:
        wait_for(lambda: len(descendants(holder.pid)) > 1)  # its workers: the outputs are held
        live_temp.write_text("being written")
        code, stderr = scan(sample_folder(tmp_path / "second", 3), "--csv", str(out / "r.csv"))
        assert code == 2, stderr
        assert stderr.startswith("patchscan: error: ") and len(stderr.splitlines()) == 1
        assert f"pid {holder.pid}" in stderr and "patchscan scan" in stderr
        assert live_temp.exists()
        with open(first / "stuck.png", "wb") as fifo:  # let the first scan finish
            fifo.write(b"not an image")
        assert holder.wait(timeout=30) == 1  # one error row: the FIFO's
    assert sorted(Path(p).name for p in paths_in(out / "r.csv")) == sorted(
        p.name for p in first.iterdir()
    )


def test_a_watch_holds_its_outputs_until_it_ends_even_by_kill_9(tmp_path: Path) -> None:
    folder = sample_folder(tmp_path / "in", 5)
    out = tmp_path / "out"
    out.mkdir()
    outputs = ("--csv", str(out / "r.csv"), "--json", str(out / "r.json"))
    with running("watch", str(folder), *outputs, "--settle", "0.2") as watcher:
        wait_for(lambda: (out / "r.json").exists())
        # Another CSV, but the same JSON: still two writers of one file.
        code, stderr = scan(folder, "--csv", str(out / "other.csv"), "--json", str(out / "r.json"))
        assert code == 2 and f"pid {watcher.pid}" in stderr and "patchscan watch" in stderr
        second = CliRunner().invoke(main, ["watch", str(folder), "--model", str(TINY), *outputs])
        assert second.exit_code == 2 and f"pid {watcher.pid}" in second.stderr
        watcher.kill()  # kill -9: the lock ends with its process, no stale lock to delete
        watcher.wait()
    code, stderr = scan(folder, *outputs)
    assert code == 0, stderr
    assert len(paths_in(out / "r.csv")) == 5


def test_a_killed_runs_temp_files_are_removed_by_the_next_run(tmp_path: Path) -> None:
    folder = sample_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".r.csv.k1ll_9ed.tmp", out / ".r.json.abcdefgh.tmp"]
    others = [  # another output's temp files, and files that only look like one
        out / ".r.csv.bak.abcdefgh.tmp",
        out / ".other.csv.abcdefgh.tmp",
        out / "r.csv.abcdefgh.tmp",
        out / ".r.csv.abc.tmp",
    ]
    for path in stale + others:
        path.write_text("left by kill -9")
    code, stderr = scan(folder, "--csv", str(out / "r.csv"), "--json", str(out / "r.json"))
    assert code == 0, stderr
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in others)


def test_the_lock_beside_outputs_in_the_scanned_folder_is_not_a_file_of_the_scan(
    tmp_path: Path,
) -> None:
    folder = sample_folder(tmp_path / "in", 2)
    for _ in range(2):  # the second finds the lock file left by the first
        code, stderr = scan(
            folder, "--csv", str(folder / "r.csv"), "--json", str(folder / "r.json")
        )
        assert code == 0, stderr
    assert json.loads((folder / "r.json").read_text())["skipped"] == {}
    assert "unchanged since the last scan" in stderr
