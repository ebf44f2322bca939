"""A slide whose colours lie outside the training slides' is flagged, not silently called."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SAMPLES, with_metadata
from patchscan import stain
from patchscan.cli import main
from patchscan.imaging import load_rgb

TINY = Path(__file__).parent / "data" / "tiny.onnx"


def colour_range(reference: stain.ColourStats, limit: float = 3.0) -> dict[str, object]:
    spread = {"mean": [0.05, 0.01, 0.005], "std": [0.05, 0.01, 0.005]}
    return {"reference": reference.to_metadata(), "spread": spread, "drift_limit": limit}


def sampled_stats(folder: Path) -> stain.ColourStats:
    """What the scan measures under the tiny model: the lattice sample of the slide's patches
    (stain.sampled, on the model's 8 px grid step), as the model's 8x8 input."""
    pixels = []
    for path in sorted(folder.rglob("*.png")):
        x, y = (int(part[1:]) for part in path.stem.split("_")[2:4])
        if stain.sampled(x, y, 8):
            pixels.append(load_rgb(path, (8, 8)))
    stats = stain.slide_stats(pixels)
    assert stats is not None
    return stats


def scan(folder: Path, model: Path, out: Path) -> dict:
    result = CliRunner().invoke(
        main,
        [
            "scan",
            str(folder),
            "--model",
            str(model),
            "--json",
            str(out / "r.json"),
            "--report",
            str(out / "r.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "r.json").read_text())


def test_a_slide_like_the_training_slides_is_inside_the_range(tmp_path: Path) -> None:
    slide = SAMPLES / "9035"
    model = with_metadata(TINY, tmp_path / "m.onnx", stain=colour_range(sampled_stats(slide)))
    report = scan(slide, model, tmp_path)
    (group,) = report["groups"]
    assert group["colour_drift"] == pytest.approx(0.0, abs=1e-6)
    assert group["outside_training"] is False
    assert "outside what the model was trained on" not in (tmp_path / "r.html").read_text()


def test_a_slide_unlike_them_is_flagged_in_the_json_and_first_in_the_report(
    tmp_path: Path,
) -> None:
    slide = SAMPLES / "9035"
    own = sampled_stats(slide)
    far = stain.ColourStats((own.mean[0] + 0.4, *own.mean[1:]), own.std)  # 8 spreads away
    model = with_metadata(TINY, tmp_path / "m.onnx", stain=colour_range(far))
    report = scan(slide, model, tmp_path)
    (group,) = report["groups"]
    assert group["colour_drift"] == pytest.approx(8.0, abs=1e-3)
    assert group["outside_training"] is True
    page = (tmp_path / "r.html").read_text()
    assert "1 slide(s) outside what the model was trained on" in page
    assert page.index("outside what the model") < page.index('id="counts"')  # first of all
    assert "<td class='warn'>8.0 ⚠</td>" in page  # and flagged in the slide's row


def test_the_drift_survives_a_rescan_from_the_store(tmp_path: Path) -> None:
    """Known results carry their colour sums in the store: a rescan reports the same drift."""
    slide = SAMPLES / "9035"
    own = sampled_stats(slide)
    far = stain.ColourStats((own.mean[0] + 0.4, *own.mean[1:]), own.std)
    model = with_metadata(TINY, tmp_path / "m.onnx", stain=colour_range(far))
    first = scan(slide, model, tmp_path)
    (tmp_path / "r.json").unlink()
    again = scan(slide, model, tmp_path)
    assert again["groups"][0]["colour_drift"] == first["groups"][0]["colour_drift"]


def test_sums_of_patches_give_the_pooled_statistics() -> None:
    pixels = [load_rgb(p, (50, 50)) for p in sorted((SAMPLES / "9035").rglob("*.png"))[:40]]
    pooled = stain.slide_stats(pixels)
    summed = stain.stats_from_sums(tuple(np.sum([stain.colour_sums(p) for p in pixels], axis=0)))
    assert pooled is not None and summed is not None
    np.testing.assert_allclose(summed.mean, pooled.mean, rtol=1e-9)
    np.testing.assert_allclose(summed.std, pooled.std, rtol=1e-6)


def test_models_without_a_colour_range_report_no_drift(tmp_path: Path) -> None:
    report = scan(SAMPLES / "9035", TINY, tmp_path)
    assert report["groups"][0]["colour_drift"] is None
    assert report["groups"][0]["outside_training"] is False


def test_summed_patch_contributions_give_the_slides_own_statistics() -> None:
    """colour_sums (one pass, via log-LMS's Gram matrix) pooled over patches equals slide_stats
    on the same pixels, background left out of both."""
    pixels = [load_rgb(p, (50, 50)).copy() for p in sorted((SAMPLES / "9035").rglob("*.png"))[:40]]
    pixels[0][:25] = 250  # half a patch of glass
    sums = np.sum([stain.colour_sums(p) for p in pixels], axis=0)
    pooled = stain.stats_from_sums(tuple(sums))  # type: ignore[arg-type]
    direct = stain.slide_stats(pixels)
    assert pooled is not None and direct is not None and pooled.pixels == direct.pixels
    np.testing.assert_allclose(pooled.mean, direct.mean, rtol=1e-9)
    np.testing.assert_allclose(pooled.std, direct.std, rtol=1e-7)
    assert stain.tissue_mask(np.array([[[214, 255, 255], [215, 215, 215]]], np.uint8)).tolist() == [
        [True, False]
    ]
