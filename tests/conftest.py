"""Shared fixtures: the tiny model, real sample patches, and a folder of every kind of bad input."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = Path(__file__).parent / "data" / "tiny.onnx"
SAMPLES = ROOT / "assets" / "samples" / "idc"
SHARED_DATA = ROOT.parent / "shared" / "data"


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live or zombie process from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, parent = stat[stat.rindex(")") + 2 :].split()[:2]  # the name may hold ") "
    return state, int(parent)


def running(pid: int) -> bool:
    """Whether `pid` still runs: a zombie has ended, it only waits to be reaped."""
    state = process_state(pid)
    return state is not None and state[0] not in "ZX"


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (every thread's children, unlike /proc/.../children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = process_state(int(entry))
            if state is not None and state[1] == pid:
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def command_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return "?"


def _become_subreaper() -> None:
    """Orphans of the processes the tests start (a killed scan's workers) become this process's
    children instead of PID 1's, so the check below sees them."""
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _own_resource_tracker() -> int | None:
    """multiprocessing's tracker for this pytest process: it ends when pytest does."""
    from multiprocessing import resource_tracker

    return getattr(resource_tracker._resource_tracker, "_pid", None)


def _left_behind(timeout: float) -> list[int]:
    """This process's children still running after `timeout` s (zombies are reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in children(os.getpid()):
            if not running(pid):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        left = [p for p in children(os.getpid()) if running(p) and p != _own_resource_tracker()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """The suite leaves no process running: what a test started, or orphaned, is killed, and
    the run fails saying which."""
    if not sys.platform.startswith("linux"):
        yield
        return
    _become_subreaper()
    yield
    left = _left_behind(timeout=10)
    commands = [f"{pid}: {command_of(pid)}" for pid in left]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _left_behind(timeout=2)
    if commands:
        pytest.fail("processes left behind by the tests:\n" + "\n".join(commands))


@pytest.fixture(scope="session", autouse=True)
def mutation_stats_stay_in_this_process() -> Iterator[None]:
    """Under `make mutate` (docs/mutation.md) only; a no-op otherwise.

    mutmut's first pass runs the suite with MUTANT_UNDER_TEST=stats to learn which tests call
    which function. A process a test starts (the scan's workers, `python -m patchscan`)
    inherits that variable, and its mutated modules then look for mutmut's settings in their
    working directory; where a test has moved to a temporary one (test_csv) they are not there
    and the process dies. What such a process would record never reaches mutmut anyway, so it
    runs the unmutated functions instead: mutmut keeps the mode in this process too, and reads
    it from there when the variable is gone. Mutant runs (another value) are left alone, so
    workers and subprocesses do run the mutant.
    """
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        yield
        return
    del os.environ["MUTANT_UNDER_TEST"]
    try:
        yield
    finally:
        os.environ["MUTANT_UNDER_TEST"] = "stats"


@contextlib.contextmanager
def virtual_display() -> Iterator[str]:
    """A private Xvfb display, e.g. ":57". Skips without Xvfb, except in CI (`make test` has it)."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Xvfb: `make test` installs it")
        pytest.skip("Xvfb not installed")
    read, write = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as handle:
        number = handle.readline().strip()  # Xvfb picks a free display and says which
    try:
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        time.sleep(0.1)


@pytest.fixture
def tiny_model() -> Path:
    return TINY_MODEL


@pytest.fixture
def patches(tmp_path: Path) -> Path:
    """A copy of 20 real patches of patient 9035 in the dataset's own layout."""
    folder = tmp_path / "patches"
    for source in sorted((SAMPLES / "9035").glob("*/*.png"))[::12][:20]:
        target = folder / "9035" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return folder


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (for decompression-bomb tests): no real pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def write_bad_inputs(folder: Path) -> dict[str, str | None]:
    """Every awkward file the brief names. Returns name → expected error fragment (None: ok)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = (np.random.default_rng(0).random((50, 50, 3)) * 255).astype(np.uint8)
    good = Image.fromarray(rgb)
    expected: dict[str, str | None] = {}

    (folder / "empty.png").write_bytes(b"")
    expected["empty.png"] = "empty file"
    buffer = folder / "whole.png"
    good.save(buffer)
    (folder / "truncated.png").write_bytes(buffer.read_bytes()[:300])
    buffer.unlink()
    expected["truncated.png"] = "truncated"
    (folder / "notes.png").write_text("not an image at all\n")
    expected["notes.png"] = "not an image"
    (folder / "random.jpg").write_bytes(np.random.default_rng(1).bytes(4000))
    expected["random.jpg"] = "not an image"
    (folder / "bomb.png").write_bytes(png_with_size(30000, 30000))
    expected["bomb.png"] = "too large"

    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    expected["sixteen.png"] = None
    good.convert("RGBA").save(folder / "alpha.png")
    expected["alpha.png"] = None
    good.convert("L").save(folder / "grey.png")
    expected["grey.png"] = None
    good.convert("CMYK").save(folder / "cmyk.jpg")
    expected["cmyk.jpg"] = None
    good.resize((73, 31)).save(folder / "odd_size.png")
    expected["odd_size.png"] = None
    good.save(folder / "ünïcødé 名前.png")
    expected["ünïcødé 名前.png"] = None
    good.save(folder / "UPPER.PNG")
    expected["UPPER.PNG"] = None

    (folder / "x.png").mkdir()  # a folder with an image name is walked, not read
    good.save(folder / "x.png" / "inside.tif")
    expected["x.png/inside.tif"] = None
    (folder / "readme.txt").write_text("skipped, not a row")
    (folder / ".hidden.png").write_bytes(b"")
    os.symlink(folder, folder / "loop")  # a folder symlink pointing back up
    os.symlink("self.png", folder / "self.png")  # a symlink loop with an image name
    expected["self.png"] = "cannot"
    return expected


@pytest.fixture
def bad_inputs(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    folder = tmp_path / "bad"
    return folder, write_bad_inputs(folder)


TINY_CONTEXT = Path(__file__).parent / "data" / "tiny_context.onnx"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def with_metadata(source: Path, target: Path, **changes: object) -> Path:
    """Copy the ONNX model `source` to `target` with its `patchscan` metadata entry changed.

    Plain protobuf surgery (ModelProto.metadata_props is field 14), so no test needs the `onnx`
    package of the train extra to make a model with other metadata (or other bytes, hence
    another sha256).
    """
    data = source.read_bytes()
    kept, metadata, position = bytearray(), None, 0
    while position < len(data):
        start = position
        key, position = _read_varint(data, position)
        wire = key & 7
        if wire == 0:
            _, position = _read_varint(data, position)
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        elif wire == 2:
            length, position = _read_varint(data, position)
            body = data[position : position + length]
            position += length
            if key >> 3 == 14 and b"patchscan" in body:
                metadata = json.loads(body[body.index(b"{") :].decode("utf-8"))
                continue
        else:
            raise ValueError(f"wire type {wire}")
        kept += data[start:position]
    assert metadata is not None, f"{source} has no patchscan metadata"
    metadata.update(changes)
    key, value = b"patchscan", json.dumps(metadata).encode("utf-8")
    entry = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(value)) + value
    target.write_bytes(bytes(kept) + b"\x72" + _varint(len(entry)) + entry)
    return target


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def stored_probabilities(csv_path: Path) -> dict[str, float]:
    """Path → the exact probability (a float, not the CSV's 6 decimals) from the result store
    beside `csv_path`: what a boundary test sets --threshold to."""
    db = csv_path.with_name(csv_path.stem + ".patchscan.db")
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT path, probability FROM results").fetchall()
    return {path: probability for path, probability in rows if probability is not None}


def group_members(group: int) -> list[int]:
    """The live (not zombie) processes of a process group: a test that starts one checks that
    nothing of it, workers included, outlives it."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def kill_group(group: int) -> None:
    """SIGKILL whatever is left of a process group a test started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.fixture
def predicted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the images each scan sends to the workers (which classify every one they get)."""
    from patchscan import pipeline

    counts: list[int] = []
    real = pipeline.Workers.submit

    def counting(self: pipeline.Workers, chunk: list, model: object, tiles: bool) -> object:  # type: ignore[type-arg]
        counts.append(len(chunk))
        return real(self, chunk, model, tiles)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline.Workers, "submit", counting)
    return counts
