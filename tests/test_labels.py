"""Every label rule at its boundary: P (or the slide-context score) == threshold is positive,
and --threshold applies wherever a label is made: fresh results, slide-context scores, and
results relabelled from the result store on a rescan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import TINY_CONTEXT, read_csv, stored_probabilities
from patchscan.cli import main
from patchscan.context import SlideContext

# tiny_context.onnx's own slide context (tests/make_tiny_model.py)
CONTEXT = SlideContext(step=50, radius=1, self_weight=2.0, threshold=0.5)


def scan(folder: Path, model: Path, csv_path: Path, *extra: str) -> list[dict[str, str]]:
    args = ["scan", str(folder), "--model", str(model), "--csv", str(csv_path), "--quiet"]
    result = CliRunner().invoke(main, [*args, *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return read_csv(csv_path)


def labels(rows: list[dict[str, str]]) -> dict[str, str]:
    return {r["path"]: r["label"] for r in rows}


def pick_threshold(probabilities: dict[str, float]) -> tuple[str, float]:
    """A file whose P is above 0.5 with another file between 0.5 and it: labelling at the
    model's 0.5 instead of at this P gives that other file another label."""
    above = sorted((p, path) for path, p in probabilities.items() if p > 0.5)
    assert len(above) >= 2, "the sample patches changed: pick another threshold"
    p, path = above[len(above) // 2]
    return path, p


def test_p_equal_to_the_threshold_is_positive(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Guards Labels.of_probability's `>=`: a file whose P is exactly --threshold is labelled IDC."""
    csv_path = tmp_path / "r.csv"
    scan(patches, tiny_model, csv_path)
    probabilities = stored_probabilities(csv_path)
    path, p = pick_threshold(probabilities)
    rows = scan(patches, tiny_model, csv_path, "--threshold", repr(p), "--force")
    got = labels(rows)
    assert got[path] == "IDC"
    assert got == {q: ("IDC" if probabilities[q] >= p else "non-IDC") for q in probabilities}
    assert list(got.values()).count("non-IDC") > 0  # the threshold did split the files


def test_stored_results_are_relabelled_at_the_given_threshold(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    """A rescan with another --threshold takes P from the result store and labels it at that
    threshold (not the model's), with P == threshold positive, without classifying again."""
    csv_path = tmp_path / "r.csv"
    first = labels(scan(patches, tiny_model, csv_path))
    probabilities = stored_probabilities(csv_path)
    assert first == {q: ("IDC" if p >= 0.5 else "non-IDC") for q, p in probabilities.items()}
    path, p = pick_threshold(probabilities)
    predicted.clear()
    again = labels(scan(patches, tiny_model, csv_path, "--threshold", repr(p)))
    assert predicted == []  # every label came from the store
    assert again[path] == "IDC"
    assert again == {q: ("IDC" if probabilities[q] >= p else "non-IDC") for q in probabilities}
    assert again != first


def slide(folder: Path) -> Path:
    """A 3x3 slide of white patches around a black one (tiny model: P = mean pixel value):
    context scores are 0.8 in the corners and the centre, 6/7 on the edges."""
    for i in range(3):
        for j in range(3):
            grey = 0 if (i, j) == (1, 1) else 255
            name = f"8863_idx5_x{1 + 50 * i}_y{1 + 50 * j}_class1.png"
            Image.new("RGB", (50, 50), (grey, grey, grey)).save(folder / name)
    return folder


def edge(name: str) -> bool:
    return name.count("_x51_") + name.count("_y51_") == 1


def test_threshold_applies_to_slide_context_scores(tmp_path: Path) -> None:
    """--threshold 0.82 splits the context scores (0.8 corners and centre, 0.857 edges); the
    model's own 0.5 would call all nine IDC."""
    (tmp_path / "in").mkdir()
    json_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    rows = scan(
        slide(tmp_path / "in"),
        TINY_CONTEXT,
        tmp_path / "r.csv",
        *("--threshold", "0.82", "--json", str(json_path), "--report", str(html_path)),
    )
    got = {Path(r["path"]).name: (r["label"], float(r["context"])) for r in rows}
    assert len(got) == 9
    for name, (label, context) in got.items():
        assert context == pytest.approx(6 / 7 if edge(name) else 0.8, abs=1e-6), name
        assert label == ("IDC" if edge(name) else "non-IDC"), name
    report = json.loads(json_path.read_text())  # the reports say which threshold was used
    assert report["model"]["slide_context"]["threshold"] == 0.82
    assert report["counts"] == {"non-IDC": 5, "IDC": 4}
    assert "(up to 1 patches away) is ≥ 0.82</td>" in html_path.read_text()


def exact_context_scores(csv_path: Path) -> dict[str, float]:
    """The context scores as the scan computes them, from the exact stored probabilities."""
    probabilities = stored_probabilities(csv_path)
    paths = sorted(probabilities)
    positions = [Path(p).stem.split("_")[2:4] for p in paths]
    patches = [
        (int(x[1:]), int(y[1:]), probabilities[p])
        for p, (x, y) in zip(paths, positions, strict=True)
    ]
    return dict(zip(paths, CONTEXT.scores(patches), strict=True))


def test_context_score_equal_to_the_threshold_is_positive(tmp_path: Path) -> None:
    """Guards the slide-context rule's `>=` (pipeline): --threshold set to exactly the edge
    patches' score labels them IDC, and the lower corners and centre non-IDC; then the same
    on a rescan that relabels stored results."""
    (tmp_path / "in").mkdir()
    csv_path = tmp_path / "r.csv"
    scan(slide(tmp_path / "in"), TINY_CONTEXT, csv_path)
    scores = exact_context_scores(csv_path)
    cut = max(scores.values())
    assert cut == pytest.approx(6 / 7) and sum(s == cut for s in scores.values()) == 4
    for extra in (("--force",), ()):  # fresh results, then the stored ones relabelled
        rows = scan(tmp_path / "in", TINY_CONTEXT, csv_path, "--threshold", repr(cut), *extra)
        got = labels(rows)
        assert got == {p: ("IDC" if s == cut else "non-IDC") for p, s in scores.items()}, extra


def test_stored_results_with_slide_context_are_relabelled_at_the_given_threshold(
    tmp_path: Path, predicted: list[int]
) -> None:
    (tmp_path / "in").mkdir()
    csv_path = tmp_path / "r.csv"
    first = scan(slide(tmp_path / "in"), TINY_CONTEXT, csv_path)
    assert {r["label"] for r in first} == {"IDC"}  # at the model's 0.5
    predicted.clear()
    rows = scan(tmp_path / "in", TINY_CONTEXT, csv_path, "--threshold", "0.82")
    assert predicted == []
    got = {Path(r["path"]).name: r["label"] for r in rows}
    assert got == {name: ("IDC" if edge(name) else "non-IDC") for name in got}
