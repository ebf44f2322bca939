"""Slide context: a positioned patch is labelled from itself and its neighbours on the slide."""

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from patchscan.cli import main
from patchscan.context import SlideContext
from patchscan.model import ModelInfo
from patchscan.naming import NameInfo
from patchscan.pipeline import with_context
from patchscan.results import Labels, Result

TINY_CONTEXT = Path(__file__).parent / "data" / "tiny_context.onnx"
CONTEXT = SlideContext(step=50, radius=1, self_weight=2.0, threshold=0.5)
INFO = ModelInfo("t", "0", "", ("non-IDC", "IDC"), (50, 50), threshold=0.5, context=CONTEXT)


def test_score_is_the_weighted_mean_over_the_neighbours_that_exist() -> None:
    # A 3x3 block of slide cells (names at x, y = 1 + 50 k, as in the IDC dataset), the centre 0,
    # the rest 1; and one patch far away with no neighbours.
    grid = [
        (1 + 50 * i, 1 + 50 * j, 0.0 if (i, j) == (1, 1) else 1.0)
        for i in range(3)
        for j in range(3)
    ]
    patches = [*grid, (1001, 1001, 0.3)]
    scores = {(x, y): s for (x, y, _), s in zip(patches, CONTEXT.scores(patches), strict=True)}
    assert scores[(51, 51)] == pytest.approx(8 / 10)  # 2 x 0 + 8 neighbours of 1
    assert scores[(1, 1)] == pytest.approx((2 + 2 + 0) / 5)  # corner: 3 neighbours, one is 0
    assert scores[(51, 1)] == pytest.approx((2 + 4 + 0) / 7)  # edge: 5 neighbours
    assert scores[(1001, 1001)] == pytest.approx(0.3)  # alone: its own probability


def result(group: str, x: int | None, y: int | None, p: float | None, error: str = "") -> Result:
    name = NameInfo(group, x, y, None)
    label = "" if p is None else ("IDC" if p >= 0.5 else "non-IDC")
    return Result(f"{group}/{x}_{y}", name, probability=p, label=label, error=error)


def test_stage_keeps_order_scores_each_slide_on_its_own_and_passes_the_rest() -> None:
    results = [
        result("a", 1, 1, 0.2),
        result("a", 51, 1, 0.9),
        result("a", 101, 1, None, error="cannot decode"),
        result("b", 1, 51, 0.9),  # adjacent to a's (1, 1) by position, but another slide
        result("c", None, None, 0.45),  # no position: own probability and threshold
    ]
    out = list(with_context(results, CONTEXT, Labels.of(INFO)))
    assert [r.path for r in out] == [r.path for r in results]
    assert out[0].context == pytest.approx((2 * 0.2 + 0.9) / 3) and out[0].label == "non-IDC"
    assert out[1].context == pytest.approx((2 * 0.9 + 0.2) / 3) and out[1].label == "IDC"
    assert out[2] is results[2] and out[4] is results[4]
    assert out[3].context == pytest.approx(0.9)
    assert out[0].probability == 0.2  # the model's own answer is kept beside the score


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (None, ["non-IDC", "IDC"]),  # the context's own 0.5
        (0.4, ["IDC", "IDC"]),  # would be non-IDC, IDC at the context's 0.5
        (0.7, ["non-IDC", "non-IDC"]),  # would be non-IDC, IDC at 0.5
        ((2 * 0.2 + 0.9) / 3, ["IDC", "IDC"]),  # a score equal to the threshold is positive
    ],
)
def test_a_given_threshold_applies_to_the_context_score(
    threshold: float | None, expected: list[str]
) -> None:
    """Scores 0.433 and 0.667: each given threshold labels them otherwise than the context's
    own 0.5 would, and than the patches' own probabilities (0.2, 0.9) would."""
    results = [result("a", 1, 1, 0.2), result("a", 51, 1, 0.9)]
    out = list(with_context(results, CONTEXT, Labels.of(INFO, threshold)))
    assert [r.label for r in out] == expected


def test_ctrl_c_hands_over_the_slide_held_back() -> None:
    def interrupted():  # type: ignore[no-untyped-def]
        yield result("a", 1, 1, 0.2)
        yield result("a", 51, 1, 0.9)
        raise KeyboardInterrupt

    got = []
    with pytest.raises(KeyboardInterrupt):
        for r in with_context(interrupted(), CONTEXT, Labels.of(INFO)):
            got.append(r)
    assert [r.context is not None for r in got] == [True, True]


def write_patch(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (50, 50), (value, value, value)).save(path)


def test_scan_labels_a_slides_patches_by_their_context(tmp_path: Path) -> None:
    """The tiny model's P is the mean pixel: a black patch amid white ones is IDC by context."""
    slide = tmp_path / "in" / "8863"
    for i in range(3):
        for j in range(3):
            x, y = 1 + 50 * i, 1 + 50 * j
            write_patch(slide / f"8863_idx5_x{x}_y{y}_class1.png", 0 if (i, j) == (1, 1) else 255)
    write_patch(tmp_path / "in" / "loose" / "photo.png", 0)
    result_ = CliRunner().invoke(main, ["scan", str(tmp_path / "in"), "--model", str(TINY_CONTEXT)])
    assert result_.exit_code == 0, result_.output
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(result_.stdout))}
    centre = rows["8863_idx5_x51_y51_class1.png"]
    assert float(centre["probability"]) == 0.0
    assert float(centre["context"]) == pytest.approx(0.8) and centre["label"] == "IDC"
    corner = rows["8863_idx5_x1_y1_class1.png"]
    assert float(corner["context"]) == pytest.approx(0.8) and corner["label"] == "IDC"
    loose = rows["photo.png"]
    assert loose["context"] == "" and loose["label"] == "non-IDC"


def test_models_without_context_leave_the_column_empty(tiny_model: Path, patches: Path) -> None:
    result_ = CliRunner().invoke(main, ["scan", str(patches), "--model", str(tiny_model)])
    assert result_.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result_.stdout)))
    assert len(rows) == 20 and all(r["context"] == "" for r in rows)
    assert all((r["label"] == "IDC") == (float(r["probability"]) >= 0.5) for r in rows)


def test_files_without_a_position_neither_warn_nor_wait(caplog: pytest.LogCaptureFixture) -> None:
    """A lab folder's loose photos (group "lab", no x, y) with a patient's patches sorted among
    them are not a slide split in two: only positioned patches make up a slide."""
    results = [
        result("lab", None, None, 0.1),
        result("p1", 1, 1, 0.9),
        result("lab", None, None, 0.2),
        result("p1", 51, 1, 0.9),
        result("lab", None, None, 0.3),
    ]
    with caplog.at_level("WARNING"):
        out = list(with_context(results, CONTEXT, Labels.of(INFO)))
    assert "not together" not in caplog.text
    assert [r.path for r in out] == [r.path for r in results]
    assert [r.context is not None for r in out] == [False, True, False, True, False]
    assert out[1].context == pytest.approx(0.9)  # both p1 patches scored as one slide

    def one_then_fail():  # type: ignore[no-untyped-def]
        yield result("lab", None, None, 0.1)
        raise AssertionError("a file without a position was held for context")

    first = next(with_context(one_then_fail(), CONTEXT, Labels.of(INFO)))
    assert first.path == "lab/None_None"
