"""The HTML report rendered by a real headless Chromium (Debian's package, installed by `make test`)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchscan.scan import ScanSettings, run_scan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed")
def test_report_renders_in_chromium(
    bad_inputs: tuple[Path, dict], tiny_model: Path, tmp_path: Path
) -> None:
    assert CHROMIUM, "CI must have chromium: `make test` installs it"
    samples = Path(__file__).resolve().parents[1] / "assets" / "samples" / "idc"
    report = tmp_path / "report.html"
    run_scan(
        ScanSettings(paths=(samples, bad_inputs[0]), model=str(tiny_model), report=report), "test"
    )
    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
    subprocess.run(
        [*common, "--window-size=1300,2200", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [*common, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for text in (
        "Provenance",
        "Per slide / patient",
        "Slides",
        "Most suspicious",
        "Probability histogram",
        "could not be classified",
        "truncated image",
    ):
        assert text in dom
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (2200, 1300)
    assert pixels.std() > 20  # not a blank page: the heatmaps and thumbnails drew
    keep = os.environ.get("PATCHSCAN_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report.png")
