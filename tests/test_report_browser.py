"""The HTML report rendered by a real headless Chromium (Debian's package, installed by `make test`)."""

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CONTEXT, read_csv
from patchscan.report import images
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


# Near the samples' median score under the tiny model, so that both slides have calls either
# way, and some patches whose own P and context score fall on either side of it.
THRESHOLD = 0.75
# The report's sections, in the order a reader needs them (no review band in this model).
ORDER = ["slide-table", "slides", "suspicious", "histogram", "agreement", "errors", "provenance"]
ORDER += ["model"]


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed")
def test_report_renders_in_chromium(bad_inputs: tuple[Path, dict], tmp_path: Path) -> None:
    """The bundled idc samples through the slide-context model, as Chromium reads the page:
    sections in order, every slide row linked to its card, and each slide's heatmap and calls
    map drawn from the score its CSV label was decided on."""
    assert CHROMIUM, "CI must have chromium: `make test` installs it"
    samples = Path(__file__).resolve().parents[1] / "assets" / "samples" / "idc"
    report, table = tmp_path / "report.html", tmp_path / "r.csv"
    settings = ScanSettings(
        paths=(samples, bad_inputs[0]),
        model=str(TINY_CONTEXT),
        report=report,
        csv=table,
        threshold=THRESHOLD,
    )
    run_scan(settings, "test")
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
    for text in ("Per slide / patient", "Most suspicious, per slide", "could not be classified"):
        assert text in dom
    assert "truncated image" in dom
    assert re.findall(r'<h2 id="([a-z-]+)"', dom) == ORDER
    assert dom.index('id="contents"') < dom.index('id="counts"') < dom.index('id="slide-table"')
    assert_every_slide_row_links_to_its_card(dom)
    assert_maps_follow_the_labels(dom, read_csv(table))
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (2200, 1300)
    assert pixels.std() > 20  # not a blank page: the heatmaps and thumbnails drew
    keep = os.environ.get("PATCHSCAN_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report.png")


def assert_every_slide_row_links_to_its_card(dom: str) -> None:
    part = dom[dom.index('id="slide-table"') : dom.index('id="slides"')]
    rows = part.split("<tr>")[2:]
    assert len(rows) == 4  # 8916, 9035, and the two folders of bad inputs (no positions)
    cards = dict(re.findall(r'<details class="slide" id="([^"]+)"[^>]*><summary><b>([^<]*)<', dom))
    linked = dict(
        (name, anchor)
        for row in rows
        for anchor, name in re.findall(r'<td class="l"><a href="#([^"]+)">([^<]*)</a>', row)
    )
    assert sorted(linked) == ["8916", "9035"]  # each slide; a folder of photos has no card
    assert {name: anchor for anchor, name in cards.items()} == linked
    ids = set(re.findall(r' id="([^"]+)"', dom))
    assert set(re.findall(r'href="#([^"]+)"', dom)) <= ids


def assert_maps_follow_the_labels(dom: str, rows: list[dict[str, str]]) -> None:
    """Each positioned patch's pixel on the calls map is its CSV label, and on the heatmap the
    colour of its context score (the score that label was decided on), around the threshold."""
    for slide in ("8916", "9035"):
        mine = [r for r in rows if r["group"] == slide and r["status"] == "ok"]
        assert mine and all(r["context"] for r in mine)
        calls, heat = (picture(dom, f"{slide} {kind}") for kind in ("calls", "score"))
        xs, ys = [int(r["x"]) for r in mine], [int(r["y"]) for r in mine]
        step_x, step_y = images.grid_step(xs), images.grid_step(ys)
        disagree = 0
        for r, x, y in zip(mine, xs, ys, strict=True):
            at = ((y - min(ys)) // step_y, (x - min(xs)) // step_x)
            assert tuple(calls[at]) == images.TRUTH_COLOURS[r["label"] == "IDC"], r["path"]
            expected = images.colour(images.around_threshold(float(r["context"]), THRESHOLD))
            assert np.abs(heat[at].astype(int) - expected).max() <= 1, r["path"]
            disagree += (float(r["probability"]) >= THRESHOLD) != (r["label"] == "IDC")
        assert disagree  # some patches' own P and context disagree: the test tells them apart


def picture(dom: str, alt: str) -> np.ndarray:
    found = re.search(rf'alt="{re.escape(alt)}" src="data:image/png;base64,([^"]+)"', dom)
    assert found, alt
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(found[1]))).convert("RGB"))
