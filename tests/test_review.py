"""Calibration and the "needs review" band: from the model's metadata to the CSV, JSON and report."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from patchscan.cli import main
from patchscan.context import SlideContext
from patchscan.model import ModelInfo, read_info
from patchscan.results import Calibration, Labels, ReviewBand, review_bands

TINY_REVIEW = Path(__file__).parent / "data" / "tiny_review.onnx"
BANDS = {
    "target": 0.05,
    "confidence": 0.95,
    "method": "test",
    "calibration_set": {"patients": 3, "patches": 30},
    "bands": {
        "probability": [[0.05, 0.4, 0.6], [0.10, 0.45, 0.55], [0.02, 0.3, 0.7]],
        "context": [[0.05, 0.35, 0.65], [0.10, 0.4, 0.6]],
    },
}
INFO = ModelInfo(
    "t",
    "0",
    "",
    ("non-IDC", "IDC"),
    (50, 50),
    threshold=0.5,
    context=SlideContext(50, 1, 2.0, threshold=0.55),
    calibration={"probability": {"a": 2.0, "b": -0.5}, "context": {"a": 1.0, "b": 0.0}},
    review=BANDS,
    stain={"method": "reinhard", "target": {"mean": [3.8, -0.03, 0.02], "std": [0.2, 0.03, 0.01]}},
)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_model_metadata_round_trips_calibration_review_and_stain() -> None:
    again = ModelInfo.from_metadata(json.loads(json.dumps(INFO.to_metadata())))
    assert again == INFO


def test_the_review_metadata_is_read_back_from_the_onnx_file() -> None:
    info = read_info(TINY_REVIEW)
    assert info.calibration == {"probability": {"a": 1.0, "b": 1.0}}
    assert info.review is not None and info.review["bands"]["probability"][0] == [0.05, 0.4, 0.6]


def test_calibration_is_platt_scaling_of_the_logit() -> None:
    calibrate = Calibration(2.0, -0.5)
    for p in (0.01, 0.3, 0.5, 0.9):
        assert calibrate(p) == pytest.approx(sigmoid(2 * math.log(p / (1 - p)) - 0.5))
    assert calibrate(0.0) < 1e-9 and calibrate(1.0) > 1 - 1e-9  # clipped, no math error


def test_a_band_includes_its_low_edge_and_excludes_its_high_edge() -> None:
    labels = Labels.of(INFO)
    assert labels.review == ReviewBand(0.4, 0.6)
    assert labels.review_probability(0.4) and labels.review_probability(0.5999)
    assert not labels.review_probability(0.6) and not labels.review_probability(0.3999)
    assert labels.context_review == ReviewBand(0.35, 0.65)
    assert labels.review_context(0.35) and not labels.review_context(0.65)


def test_the_label_stays_the_decision_at_the_threshold_inside_the_band() -> None:
    labels = Labels.of(INFO)
    assert labels.of_probability(0.5) == "IDC" and labels.review_probability(0.5)
    assert labels.of_probability(0.4999) == "non-IDC" and labels.review_probability(0.4999)
    assert labels.of_context(0.55) == "IDC" and labels.of_context(0.5499) == "non-IDC"


def test_review_error_picks_the_largest_tabulated_target_not_above_it() -> None:
    assert review_bands(BANDS, 0.10)["probability"] == ReviewBand(0.45, 0.55)
    assert review_bands(BANDS, 0.07)["probability"] == ReviewBand(0.4, 0.6)  # 0.05's, not 0.10's
    assert review_bands(BANDS, 0.02)["probability"] == ReviewBand(0.3, 0.7)
    assert review_bands(BANDS, 0.001)["probability"] == ReviewBand(0.3, 0.7)  # the strictest
    assert review_bands(BANDS, None)["target"] == 0.05
    assert Labels.of(INFO, review_error=0.10).review_target == 0.10


def test_a_threshold_outside_the_band_widens_it_to_hold_the_threshold() -> None:
    labels = Labels.of(INFO, asked=0.8)
    assert labels.review == ReviewBand(0.4, 0.8) and labels.context_review == ReviewBand(0.35, 0.8)
    assert labels.review_probability(0.79) and not labels.review_probability(0.8)


def test_a_context_score_is_calibrated_by_its_own_calibration() -> None:
    labels = Labels(("non-IDC", "IDC"), 0.5, 0.5, context_calibration=Calibration(2.0, -0.5))
    assert labels.calibrated_context(0.3) == pytest.approx(sigmoid(2 * math.log(0.3 / 0.7) - 0.5))
    assert labels.calibrated(0.3) == 0.3  # the patch's probability has no calibration here
    assert Labels(("non-IDC", "IDC"), 0.5, 0.5).calibrated_context(0.3) == 0.3


def test_a_model_without_slide_context_has_no_context_label() -> None:
    with pytest.raises(ValueError, match=r"^this model has no slide context$"):
        Labels(("non-IDC", "IDC"), 0.5).of_context(0.7)


def test_a_model_without_review_metadata_marks_nothing() -> None:
    labels = Labels.of(read_info(Path(__file__).parent / "data" / "tiny.onnx"))
    assert labels.review is None and not labels.review_probability(0.5)
    assert labels.calibrated(0.37) == 0.37


def write_grey(folder: Path, name: str, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(folder / name)


def test_scan_writes_calibrated_probabilities_and_the_review_column(tmp_path: Path) -> None:
    """tiny_review: P = sigmoid(logit(mean pixel) + 1); band [0.4, 0.6) at target 0.05."""
    values = {"dark.png": 20, "middle.png": 70, "light.png": 200}
    for name, value in values.items():
        write_grey(tmp_path / "in", name, value)
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(
        main,
        ["scan", str(tmp_path / "in"), "--model", str(TINY_REVIEW), "--csv", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    expected = {name: sigmoid(math.log(v / 255 / (1 - v / 255)) + 1) for name, v in values.items()}
    for name, q in expected.items():
        assert float(rows[name]["probability"]) == pytest.approx(q, abs=1e-4), name
        assert rows[name]["label"] == ("IDC" if q >= 0.5 else "non-IDC"), name
        assert rows[name]["review"] == ("yes" if 0.4 <= q < 0.6 else "no"), name
    assert [rows[n]["review"] for n in ("dark.png", "middle.png", "light.png")] == [
        "no",
        "yes",
        "no",
    ]
    # Written again from the result store (the CSV gone, nothing re-read): the same marks.
    first = out.read_text()
    out.unlink()
    args = ["scan", str(tmp_path / "in"), "--model", str(TINY_REVIEW), "--csv", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_text() == first


def test_json_counts_review_per_class_and_per_slide(tmp_path: Path) -> None:
    for name, value in {"a.png": 70, "b.png": 60, "c.png": 20, "d.png": 230}.items():
        write_grey(tmp_path / "in" / "slide", name, value)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["scan", str(tmp_path / "in"), "--model", str(TINY_REVIEW), "--json", str(report)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    # 70 -> 0.507 (IDC) and 60 -> 0.455 (non-IDC) in the band; 20 -> 0.19, 230 -> 0.96 decided
    assert data["review"]["total"] == 2 and data["review"]["counts"] == {"non-IDC": 1, "IDC": 1}
    assert data["review"]["target_error"] == 0.05 and data["review"]["method"] == "test"
    (group,) = data["groups"]
    assert group["group"] == "slide" and group["review"] == 2


def test_the_summary_line_counts_the_calls_to_review_when_the_model_has_a_band(
    tmp_path: Path,
) -> None:
    for name, value in {"a.png": 70, "b.png": 60, "c.png": 20}.items():
        write_grey(tmp_path / "in", name, value)
    for model, expected in ((TINY_REVIEW, True), (TINY_REVIEW.with_name("tiny.onnx"), False)):
        args = ["scan", str(tmp_path / "in"), "--model", str(model), "--csv", "-"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert ("3 files: " in result.stderr) and ("2 need review" in result.stderr) == expected


def test_review_error_option_narrows_the_band(tmp_path: Path) -> None:
    write_grey(tmp_path / "in", "a.png", 80)  # 0.555: in [0.4, 0.6), not in [0.45, 0.55)
    args = ["scan", str(tmp_path / "in"), "--model", str(TINY_REVIEW)]
    strict = CliRunner().invoke(main, args)
    loose = CliRunner().invoke(main, [*args, "--review-error", "0.1"])
    assert next(iter(csv.DictReader(io.StringIO(strict.stdout))))["review"] == "yes"
    assert next(iter(csv.DictReader(io.StringIO(loose.stdout))))["review"] == "no"


def test_review_error_must_be_a_rate(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--review-error", "1.5"])
    assert result.exit_code == 2 and "--review-error" in result.output


def test_the_report_opens_with_what_needs_review(tmp_path: Path) -> None:
    for name, value in {"a.png": 70, "c.png": 20}.items():
        write_grey(tmp_path / "in" / "slide", name, value)
    report = tmp_path / "r.html"
    result = CliRunner().invoke(
        main,
        ["scan", str(tmp_path / "in"), "--model", str(TINY_REVIEW), "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert page.index("Needs review (1)") < page.index("Provenance")
    assert "need review" in page and "at most 5%" in page
