"""Workers are bound to their run: however the scan or watch ends, even by kill -9, its worker
processes and multiprocessing's resource tracker end with it (each worker holds ~90 MB)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import SAMPLES, command_of, descendants, running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def workers_of(pid: int) -> list[int]:
    return [p for p in descendants(pid) if "spawn_main" in command_of(p)]


@contextlib.contextmanager
def started(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A patchscan process; whatever it leaves behind is killed when the test is done."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        yield process
    finally:
        seen.update(descendants(process.pid))
        process.kill()
        process.wait()
        for pid in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def assert_all_end_with(process: subprocess.Popen[bytes], within: float = 5.0) -> None:
    """kill -9 `process`: none of its descendants may outlive it by more than `within` s."""
    family = descendants(process.pid)
    assert any("resource_tracker" in command_of(p) for p in family), "no tracker to check"
    process.kill()
    process.wait()
    deadline = time.monotonic() + within
    while any(running(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in family if running(p)]
    commands = [f"{p}: {command_of(p)}" for p in left]
    for pid in left:  # (so that a failure here leaves nothing behind either)
        os.kill(pid, signal.SIGKILL)
    assert not commands, f"outlived the run by {within} s: {commands}"


def patchscan(*args: str) -> list[str]:
    model = Path(__file__).parent / "data" / "tiny.onnx"
    return [sys.executable, "-m", "patchscan", *args, "--model", str(model)]


def test_kill_9_of_a_watch_ends_its_workers_and_tracker(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for source in sorted(SAMPLES.glob("*/*/*.png"))[:40]:
        shutil.copy(source, folder / source.name)
    command = patchscan("watch", str(folder), "--csv", str(out / "r.csv"), "--settle", "0.2")
    with started(command) as process:
        wait_for(lambda: len(workers_of(process.pid)) > 0 and (out / "r.csv").stat().st_size > 200)
        assert_all_end_with(process)


def test_kill_9_of_a_scan_ends_its_workers_even_one_stuck_in_a_read(tmp_path: Path) -> None:
    """A worker blocked in open() on a FIFO named like an image can run no Python: only the
    parent-death signal reaches it."""
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "stuck.png")
    for source in sorted(SAMPLES.glob("*/*/*.png"))[:4]:
        shutil.copy(source, folder / source.name)
    command = patchscan("scan", str(folder), "--csv", str(tmp_path / "r.csv"), "--batch-size", "1")
    with started(command) as process:
        wait_for(lambda: len(workers_of(process.pid)) > 0)
        time.sleep(1.0)  # the workers take their chunks; one blocks on the FIFO
        assert_all_end_with(process)


def test_without_the_signal_a_watchdog_ends_the_worker(tmp_path: Path) -> None:
    """The fallback where there is no parent-death signal (macOS, Windows), tried here on Linux:
    a spawned child running only the watchdog ends once its parent is killed."""
    script = textwrap.dedent(
        """
        import multiprocessing, sys, time
        from patchscan import pipeline

        if __name__ == "__main__":
            child = multiprocessing.get_context("spawn").Process(
                target=pipeline._exit_when_parent_ends
            )
            child.start()
            print(child.pid, flush=True)
            time.sleep(600)
        """
    )
    (tmp_path / "parent.py").write_text(script)
    command = [sys.executable, str(tmp_path / "parent.py")]
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=environment)
    try:
        line = process.stdout.readline() if process.stdout else b""
        assert line.strip(), "the child did not start"
        child = int(line)
        assert running(child)
        process.kill()
        process.wait()
        wait_for(lambda: not running(child), timeout=5)
    finally:
        process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()
