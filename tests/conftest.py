"""Shared fixtures: the tiny model, real sample patches, and a folder of every kind of bad input."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
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
