"""The standalone binary that `make binary` builds (PyInstaller, one folder): CLI and window.

Skipped when dist/patchscan is absent, except in CI, where `make test` builds it first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, virtual_display

BINARY = ROOT / "dist" / "patchscan" / ("patchscan.exe" if os.name == "nt" else "patchscan")

pytestmark = pytest.mark.skipif(
    not BINARY.is_file() and not os.environ.get("CI"), reason="binary not built: make binary"
)


def test_version_is_baked_in() -> None:
    from patchscan import __version__

    result = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and __version__ in result.stdout


def scan_both(args: list[str], tmp_path: Path) -> str:
    """Run `args` with the binary and with the installed tool; both succeed with the same CSV,
    which is returned."""
    frozen = subprocess.run([BINARY, *args, "--csv", str(tmp_path / "b.csv")], timeout=300)
    installed = subprocess.run(
        [sys.executable, "-m", "patchscan", *args, "--csv", str(tmp_path / "i.csv")], timeout=300
    )
    assert frozen.returncode == installed.returncode == 0
    binary_csv = (tmp_path / "b.csv").read_text()
    assert binary_csv == (tmp_path / "i.csv").read_text()
    return binary_csv


def test_binary_scan_matches_the_installed_tool(tmp_path: Path) -> None:
    binary_csv = scan_both(["scan", str(SAMPLES), "--quiet"], tmp_path)
    assert binary_csv.count("\n") == 1 + len(list(SAMPLES.rglob("*.png")))
    assert not list(BINARY.parent.rglob("*.patchscan.db"))  # nothing written into the bundle


def test_binary_decodes_photos_as_the_installed_tool_does(tmp_path: Path) -> None:
    """The bundled libspng and libjpeg-turbo (pyspng, simplejpeg) are in the app and give the
    installed tool's pixels: the skin photos (JPEG) get the same probabilities, as the patches
    (PNG) do above."""
    skin = ROOT / "assets" / "samples" / "skin"
    binary_csv = scan_both(["scan", str(skin), "--model", "skin", "--quiet"], tmp_path)
    assert binary_csv.count(",ok,") == len(list(skin.rglob("*.jpg")))
    extensions = [p for p in BINARY.parent.rglob("*") if p.suffix in (".so", ".pyd")]
    assert {"_pyspng_c", "_jpeg"} <= {p.name.split(".")[0] for p in extensions}


def test_double_click_opens_the_window_and_scans(tmp_path: Path) -> None:
    xdotool = shutil.which("xdotool")
    if xdotool is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have xdotool: `make test` installs it")
        pytest.skip("xdotool not installed")
    folder = tmp_path / "lab"
    shutil.copytree(SAMPLES / "9035", folder)
    config = tmp_path / "config"
    (config / "patchscan").mkdir(parents=True)
    (config / "patchscan" / "window.json").write_text(json.dumps({"folder": str(folder)}))
    home, data = tmp_path / "home", tmp_path / "data"
    with virtual_display() as display:
        env = {
            **os.environ,
            "DISPLAY": display,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(config),
            "XDG_DATA_HOME": str(data),
        }
        app = subprocess.Popen([BINARY], env=env, stderr=subprocess.PIPE)  # no arguments
        try:
            found = subprocess.run(
                [xdotool, "search", "--sync", "--name", "patchscan"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            window = found.stdout.split()[0]
            for action in (["mousemove", "--window", window, "120", "120"], ["key", "Return"]):
                subprocess.run([xdotool, *action], env=env, check=True, timeout=30)
            results = data / "patchscan" / "results"  # the OS's per-user data folder
            deadline = time.monotonic() + 120
            while not list(results.glob("*/report.html")):
                assert time.monotonic() < deadline and app.poll() is None, "no scan"
                time.sleep(0.2)
            time.sleep(1.0)  # the window catches up with the last results
            from PIL import ImageGrab

            shot = ROOT / "test-output" / "binary-window.png"
            shot.parent.mkdir(exist_ok=True)
            ImageGrab.grab(xdisplay=display).crop((0, 0, 600, 320)).save(shot)
            (csv_file,) = results.glob("*/results.csv")
            assert csv_file.read_text().count("\n") == 1 + len(list(folder.rglob("*.png")))
        finally:
            app.terminate()
            _, stderr = app.communicate(timeout=30)
        assert b"Traceback" not in stderr
        # The theme and drag-and-drop travelled inside the app (the window says when they cannot).
        assert b"unavailable" not in stderr, stderr


def test_binary_models_and_watch(tmp_path: Path) -> None:
    models = subprocess.run([BINARY, "models"], capture_output=True, text=True, timeout=60)
    assert models.returncode == 0 and models.stdout.startswith("idc\t")
    folder, out = tmp_path / "lab", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    command = [BINARY, "watch", str(folder), "--csv", str(out / "r.csv"), "--settle", "0.3"]
    watcher = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        time.sleep(2)
        shutil.copy(next(SAMPLES.glob("9035/1/*.png")), folder / "new.png")
        deadline = time.monotonic() + 60
        while "new.png" not in ((out / "r.csv").read_text() if (out / "r.csv").exists() else ""):
            assert time.monotonic() < deadline and watcher.poll() is None, "no row"
            time.sleep(0.1)
    finally:
        watcher.send_signal(signal.SIGINT)
        _, stderr = watcher.communicate(timeout=30)
    assert watcher.returncode == 0 and b"Traceback" not in stderr
