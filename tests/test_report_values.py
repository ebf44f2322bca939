"""The numbers the CSV, JSON and HTML report give, against values worked out by hand.

Solid grey images make every probability known in advance (the tiny model's P is the mean pixel
value: grey v gives v / 255), each in the middle of its histogram bin, so the expected counts,
shares, means, metrics and orders below come from the test, not from the results they check.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import replace as dataclass_replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import TINY_MODEL, read_csv, with_metadata
from patchscan.cli import main
from patchscan.report import images
from patchscan.report import summary as summary_module
from patchscan.scan import ScanSettings, run_scan

# name (under the scan folder) → grey value; None: not an image at all
SLIDE = "1001"
LOOSE = "0-loose"  # sorts before the slide, but has fewer positives: the report lists it second
FILES: dict[str, int | None] = {
    f"{SLIDE}/1001_idx5_x1_y1_class1.png": 255,  # P 1.0, true IDC: true positive
    f"{SLIDE}/1001_idx5_x51_y1_class1.png": 210,  # 0.824, IDC: true positive
    f"{SLIDE}/1001_idx5_x1_y51_class1.png": 57,  # 0.224, IDC: false negative
    f"{SLIDE}/1001_idx5_x51_y51_class0.png": 0,  # 0.0, non-IDC: true negative
    f"{SLIDE}/1001_idx5_x101_y1_class0.png": 159,  # 0.624, non-IDC: false positive
    f"{SLIDE}/1001_idx5_x101_y51_class0.png": None,  # unreadable
    f"{LOOSE}/a.png": 108,  # 0.424, no truth
    f"{LOOSE}/b.png": 236,  # 0.925, no truth
}
BROKEN = f"{SLIDE}/1001_idx5_x101_y51_class0.png"


def p(name: str) -> float:
    grey = FILES[name]
    assert grey is not None
    return grey / 255


def write_files(folder: Path) -> Path:
    for name, grey in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if grey is None:
            path.write_bytes(b"not a png")
        else:
            Image.new("RGB", (50, 50), (grey, grey, grey)).save(path)
    (folder / LOOSE / "notes.txt").write_text("not an image name: skipped, not a row")
    return folder


@pytest.fixture
def scanned(tmp_path: Path) -> tuple[Path, Path]:
    """The folder, and the output folder holding r.csv, r.json and r.html of one scan."""
    folder = write_files(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    args = ["scan", str(folder), "--model", str(TINY_MODEL), "--quiet"]
    args += ["--csv", str(out / "r.csv"), "--json", str(out / "r.json")]
    result = CliRunner().invoke(main, [*args, "--report", str(out / "r.html")])
    assert result.exit_code == 1, result.output  # one unreadable file
    return folder, out


def test_csv_rows_have_the_values_of_each_file(scanned: tuple[Path, Path]) -> None:
    folder, out = scanned
    rows = {Path(r["path"]).relative_to(folder).as_posix(): r for r in read_csv(out / "r.csv")}
    assert list(rows) == sorted(FILES)  # discovery order: sorted, depth first
    for name, grey in FILES.items():
        row = rows[name]
        if grey is None:
            assert (row["status"], row["probability"], row["label"]) == ("error", "", "")
            assert row["error"] == "not an image PIL can read"
        else:
            assert row["status"] == "ok" and row["error"] == ""
            assert float(row["probability"]) == pytest.approx(p(name), abs=2e-6)
            assert re.fullmatch(r"[01]\.\d{6}", row["probability"])
            assert row["label"] == ("IDC" if p(name) >= 0.5 else "non-IDC")
            assert row["context"] == ""
        stem = Path(name).stem
        if name.startswith(SLIDE):
            x, y = re.search(r"_x(\d+)_y(\d+)_", stem).groups()  # type: ignore[union-attr]
            truth = "IDC" if stem.endswith("class1") else "non-IDC"
            assert (row["group"], row["x"], row["y"], row["truth"]) == (SLIDE, x, y, truth)
        else:
            assert (row["group"], row["x"], row["y"], row["truth"]) == (LOOSE, "", "", "")


def test_json_counts_groups_errors_histogram_and_metrics(scanned: tuple[Path, Path]) -> None:
    folder, out = scanned
    report = json.loads((out / "r.json").read_text())
    assert report["files"] == 8 and report["errors"] == 1
    assert report["counts"] == {"non-IDC": 3, "IDC": 4}
    assert report["error_list"] == [
        {"path": str(folder / BROKEN), "error": "not an image PIL can read"}
    ]
    assert report["skipped"] == {"not an image name": 1}
    assert report["interrupted"] is False
    assert report["model"]["threshold"] == 0.5 and report["model"]["slide_context"] is None
    assert report["settings"]["threshold"] == 0.5

    groups = {g["group"]: g for g in report["groups"]}
    assert [g["group"] for g in report["groups"]] == [LOOSE, SLIDE]  # in the scan's order
    slide = groups[SLIDE]
    assert (slide["files"], slide["classified"], slide["errors"]) == (6, 5, 1)
    assert slide["positive"] == 3
    assert slide["positive_fraction"] == pytest.approx(3 / 5)  # of the classified, not of 6
    slide_ps = [p(n) for n in FILES if n.startswith(SLIDE) and n != BROKEN]
    assert slide["mean_probability"] == pytest.approx(sum(slide_ps) / 5, abs=1e-6)
    assert slide["truth_positive"] == 3
    assert slide["metrics"]["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert slide["metrics"]["roc_auc"] == pytest.approx(5 / 6)
    loose = groups[LOOSE]
    assert (loose["files"], loose["classified"], loose["errors"], loose["positive"]) == (2, 2, 0, 1)
    assert loose["positive_fraction"] == pytest.approx(0.5)
    assert loose["mean_probability"] == pytest.approx((108 + 236) / 2 / 255, abs=1e-6)
    assert "metrics" not in loose and "truth_positive" not in loose

    expected_bins = [0] * 20
    for b in (0, 4, 8, 12, 16, 18, 19):  # 0.0, .224, .424, .624, .824, .925, 1.0
        expected_bins[b] = 1
    assert report["histogram"]["bins"] == 20 and report["histogram"]["counts"] == expected_bins

    metrics = report["metrics"]
    assert metrics["n"] == 5
    assert metrics["confusion_matrix"] == [[1, 1], [1, 2]]
    assert metrics["confusion_matrix_labels"] == ["non-IDC", "IDC"]
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics["roc_auc"] == pytest.approx(5 / 6)


def section(page: str, heading: str) -> str:
    """The part of the page under the heading that starts with `heading` (not its link in the
    contents above)."""
    start = page.index(f">{heading}", page.index("</nav>"))
    end = page.find("<h2", start)
    return page[start : end if end > 0 else len(page)]


def text(markup: str) -> str:
    """What a reader sees of `markup`: tags (a link, a <wbr>) dropped, entities read."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def table_rows(part: str) -> list[list[str]]:
    """The cells of each body row of the first table in `part`, as text."""
    table = part[part.index("<table") : part.index("</table>")]
    return [
        [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in table.split("<tr>")[2:]
    ]


def test_html_cards_table_histogram_and_errors(scanned: tuple[Path, Path]) -> None:
    folder, out = scanned
    page = (out / "r.html").read_text()
    assert "patchscan report: tiny model, 8 files</h1>" in page
    cards = re.findall(r"<b>([\d,]+)</b><span>([^<]*)</span>", page)
    assert cards == [
        ("3", "non-IDC · 42.9% of classified"),
        ("4", "IDC · 57.1% of classified"),
        ("1", "unreadable files"),
        ("1", "other files skipped"),
    ]

    table = section(page, "Per slide / patient")
    assert table_rows(table) == [  # most positive patches first: name, files, IDC, % IDC, errors
        [SLIDE, "6", "3", "60.0%", "1", "60.0%", "0.583"],
        [LOOSE, "2", "1", "50.0%", "0", "–", "–"],
    ]
    # The slide (patches with positions) links to its card; the loose folder has none to link to.
    assert re.findall(r'<td class=\'l\'><a href="#([^"]+)">([^<]*)</a>', table) == [
        ("slide-0", SLIDE)
    ]
    assert '<details class="slide" id="slide-0" open><summary><b>1001</b>' in page

    quality = section(page, "Agreement with the labels in the file names")
    values = re.findall(r"<td>([^<]*)</td>", quality)
    assert values[:7] == ["5", "0.600", "0.583", "0.667", "0.667", "0.667", "0.833"]
    assert values[7:] == ["1", "1", "1", "2"]  # the confusion matrix, row by row

    bars = re.findall(
        r"<title>([\d.]+)–([\d.]+): ([\d,]+)</title>", section(page, "Score histogram")
    )
    assert [(float(a), float(b)) for a, b, _ in bars] == [(i / 20, (i + 1) / 20) for i in range(20)]
    assert [int(n) for _, _, n in bars] == [int(i in (0, 4, 8, 12, 16, 18, 19)) for i in range(20)]
    assert "tallest bar 1." in page and 'x1="300.0"' in page  # threshold line at 0.5 of 600 px

    errors = section(page, "Files that could not be classified (1)")
    assert re.findall(r"<td class='l'>([^<]*)</td>", errors) == [
        str(folder / BROKEN),
        "not an image PIL can read",
    ]
    assert "<li>1 not an image name</li>" in errors


def suspicious(page: str) -> dict[str, list[tuple[str, str]]]:
    """Slide → its (score, file name) thumbnails, in the page's order."""
    part = section(page, "Most suspicious, per slide")
    return {
        text(block[: block.index("</h3>")]).split(" · ")[0]: [
            (score, text(name))
            for score, name in re.findall(r"<b>(\d\.\d{3})</b><br>(.*?)</figcaption>", block)
        ]
        for block in part.split("<h3>")[1:]
    }


def by_probability(slide: str) -> list[tuple[str, str]]:
    ok = sorted((p(n), n) for n in FILES if FILES[n] is not None and n.startswith(f"{slide}/"))
    return [(f"{q:.3f}", n.split("/")[1]) for q, n in reversed(ok)]


def test_most_suspicious_lists_each_slides_highest_first(scanned: tuple[Path, Path]) -> None:
    """Per slide, not one global top (which would show one patient's patches); the slides in
    the table's order, most positive first."""
    _, out = scanned
    page = (out / "r.html").read_text()
    assert list(suspicious(page).items()) == [
        (SLIDE, by_probability(SLIDE)),
        (LOOSE, by_probability(LOOSE)),
    ]


def test_most_suspicious_keeps_only_the_highest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 3 per slide, the slide's 3 highest of 5 stay, highest first (not the 3
    lowest, not the first 3 met)."""
    monkeypatch.setattr(summary_module, "TOP_PER_SLIDE", 3)
    folder = write_files(tmp_path / "in")
    run_scan(ScanSettings((folder,), model=str(TINY_MODEL), report=tmp_path / "r.html"), "test")
    shown = suspicious((tmp_path / "r.html").read_text())
    assert shown == {SLIDE: by_probability(SLIDE)[:3], LOOSE: by_probability(LOOSE)}


def test_photos_without_positions_get_no_per_group_sections(tmp_path: Path) -> None:
    """A folder of photos (class folders, no x, y in the names) is one set: no one-row table
    named after the parent folder, no slide cards; its most suspicious are the scan's highest."""
    folder = tmp_path / "skin"
    greys = {"benign/a.png": 40, "benign/b.png": 200, "malignant/c.png": 150, "malignant/d.png": 90}
    for name, grey in greys.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (50, 50), (grey,) * 3).save(folder / name)
    run_scan(ScanSettings((folder,), model=str(TINY_MODEL), report=tmp_path / "r.html"), "test")
    page = (tmp_path / "r.html").read_text()
    assert "Per slide" not in page and "<details" not in page and 'id="slides"' not in page
    part = section(page, "Most suspicious")
    top = [
        (score, text(name)) for score, name in re.findall(r"<b>(\d\.\d{3})</b><br>(.*?)</fig", part)
    ]
    assert top == [
        (f"{g / 255:.3f}", n.split("/")[1]) for n, g in sorted(greys.items(), key=lambda kv: -kv[1])
    ]


ORDER = ["review", "slide-table", "slides", "suspicious", "histogram", "agreement", "errors"]
ORDER += ["provenance", "model"]


def test_sections_come_in_the_order_a_reader_needs_and_every_link_lands(tmp_path: Path) -> None:
    """Results first (counts, review, slides), how they were made last; the contents list
    every section in that order; every in-page link has its target."""
    folder = write_files(tmp_path / "in")
    review_model = Path(__file__).parent / "data" / "tiny_review.onnx"
    run_scan(ScanSettings((folder,), model=str(review_model), report=tmp_path / "r.html"), "t")
    page = (tmp_path / "r.html").read_text()
    headings = re.findall(r'<h2 id="([a-z-]+)"', page)
    assert headings == ORDER
    contents = page[page.index('<nav id="contents"') : page.index("</nav>")]
    assert re.findall(r'href="#([a-z-]+)"', contents) == ORDER
    assert page.index('id="contents"') < page.index('id="counts"') < page.index('id="review"')
    ids = set(re.findall(r' id="([^"]+)"', page))
    targets = re.findall(r'href="#([^"]+)"', page)
    assert targets and set(targets) <= ids
    assert len(re.findall(r' id="([^"]+)"', page)) == len(ids)  # no id given twice
    # A doubtful call keeps its side's hue, paler: x1_y51 (P 0.224, calibrated 0.44) is in the
    # band [0.4, 0.6) and non-IDC; x1_y1 (P 1) a decided IDC.
    calls = slide_map(page, f"{SLIDE} calls")
    assert tuple(calls[1, 0]) == images.REVIEW_COLOURS[False]
    assert tuple(calls[0, 0]) == images.TRUTH_COLOURS[True]


# ---- escaping ------------------------------------------------------------------------------

EVIL = '<i>&"\' onclick="x'  # a tag, an entity, both quotes, and an attribute to break out into


def evil(field: str) -> str:
    return f"{field}{EVIL}"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        self.text.extend(value or "" for _, value in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_escaped(page: str, values: list[str]) -> None:
    """Each value reached the page escaped, so it reads as itself and adds no tag or attribute."""
    parser = _Tags()
    parser.feed(page)
    assert "i" not in parser.tags
    assert "onclick" not in parser.attributes
    text = "\n".join(parser.text)
    for value in values:
        assert value in text, value  # shown as the text it is
        assert html.escape(value, quote=True) in page, value


def evil_scan(tmp_path: Path, model: Path) -> str:
    folder = tmp_path / "in"
    slide = folder / "case"
    slide.mkdir(parents=True)
    for x, grey in ((1, 250), (51, 30)):
        name = f"{evil('group')}_idx5_x{x}_y1_class1.png"  # the group is the name's prefix
        Image.new("RGB", (50, 50), (grey,) * 3).save(slide / name)
    (slide / f"{evil('file')}.png").write_bytes(b"not a png")  # in the error table
    loose = folder / evil("folder")  # a folder name is the group of a plain file name
    loose.mkdir()
    Image.new("RGB", (50, 50), (200, 200, 200)).save(loose / f"{evil('photo')}.png")
    (loose / f"{evil('skipped')}.txt").write_text("x")
    settings = ScanSettings((folder,), model=str(model), report=tmp_path / "r.html")
    outcome = run_scan(settings, f"patchscan scan {evil('command')}")
    assert outcome.classified == 3 and outcome.errors == 1
    return (tmp_path / "r.html").read_text()


def test_every_value_that_reaches_the_html_is_escaped(tmp_path: Path) -> None:
    """File and folder names, slide names, reasons, the command line, and everything the
    model's metadata says (class names, description, training data, license)."""
    model = with_metadata(
        TINY_MODEL,
        tmp_path / "model.onnx",
        classes=[evil("negative"), evil("positive")],
        positive_class=evil("positive"),
        description=evil("description"),
        license=evil("license"),
        training={"data": evil("data"), "split": evil("split")},
    )
    page = evil_scan(tmp_path, model)
    assert "Most suspicious" in page and "Slides" in page and "Agreement" in page
    fields = ["group", "file", "folder", "photo", "command", "negative", "positive"]
    fields += ["description", "license", "data", "split"]
    assert_escaped(page, [evil(field) for field in fields])


def test_the_models_name_version_and_file_name_are_escaped(tmp_path: Path) -> None:
    model = with_metadata(
        TINY_MODEL, tmp_path / f"{evil('model file')}.onnx", name=evil("name"), version=evil("v")
    )
    page = evil_scan(tmp_path, model)
    assert_escaped(page, [evil("name"), evil("v"), evil("model file")])


def test_errors_beyond_the_listed_ones_are_counted_and_the_threshold_line_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 2 error rows, 3 unreadable files: 2 listed, "… and 1 more", all counted;
    and the histogram's threshold line is drawn at --threshold, not at the model's 0.5."""
    monkeypatch.setattr(summary_module, "MAX_LISTED_ERRORS", 2)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(b"not a png")
    Image.new("RGB", (50, 50), (128, 128, 128)).save(folder / "d.png")
    settings = ScanSettings(
        (folder,), model=str(TINY_MODEL), json=tmp_path / "r.json", report=tmp_path / "r.html"
    )
    outcome = run_scan(dataclass_replace(settings, threshold=0.25), "test")
    assert outcome.errors == 3
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["errors"] == 3 and report["files"] == 4
    assert [e["path"] for e in report["error_list"]] == [
        str(folder / n) for n in ("a.png", "b.png")
    ]
    page = (tmp_path / "r.html").read_text()
    errors = section(page, "Files that could not be classified (3)")
    assert errors.count("not an image PIL can read") == 2
    assert "… and 1 more (all are in the CSV)." in errors
    assert 'x1="150.0"' in page and "threshold 0.25</text>" in page


def test_metrics_of_a_slide_context_model_rank_by_the_context_score(tmp_path: Path) -> None:
    """ROC AUC must rank what labelled each patch: with slide context, the context score. A
    black patch (P 0, truth IDC) amid white ones (P 1, truth non-IDC): by P the AUC is 0; by
    context score (0.8 centre, 0.8 corners, 0.857 edges) it is (4 x 0.5 + 4 x 0) / 8."""
    from conftest import TINY_CONTEXT

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        for j in range(3):
            centre = (i, j) == (1, 1)
            name = f"8863_idx5_x{1 + 50 * i}_y{1 + 50 * j}_class{int(centre)}.png"
            Image.new("RGB", (50, 50), (0 if centre else 255,) * 3).save(folder / name)
    run_scan(ScanSettings((folder,), model=str(TINY_CONTEXT), json=tmp_path / "r.json"), "test")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metrics"]["roc_auc"] == pytest.approx(0.25)
    assert report["groups"][0]["metrics"]["roc_auc"] == pytest.approx(0.25)
    assert report["metrics"]["confusion_matrix"] == [[0, 8], [0, 1]]  # all IDC by context
    assert report["model"]["slide_context"]["threshold"] == 0.5


def test_skipped_files_alone_are_not_reported_as_failures(tmp_path: Path) -> None:
    """A README beside the photos is passed over, not an amber 'could not be classified (0)'."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (50, 50), (128, 128, 128)).save(folder / "a.png")
    (folder / "README.md").write_text("notes")
    run_scan(ScanSettings((folder,), model=str(TINY_MODEL), report=tmp_path / "r.html"), "t")
    page = (tmp_path / "r.html").read_text()
    assert "could not be classified" not in page
    assert '<h2 id="errors">Other files</h2>' in page and "1 not an image name" in page


def slide_map(page: str, alt: str) -> np.ndarray:
    """The pixels of the map whose alt text is `alt` (one pixel per patch)."""
    uri = re.search(rf'alt="{re.escape(alt)}" src="data:image/png;base64,([^"]+)"', page)
    assert uri, alt
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[1]))).convert("RGB"))


def test_maps_rankings_and_histogram_use_the_score_that_labelled_each_patch(
    tmp_path: Path,
) -> None:
    """Two 3x3 slides of the slide-context model (radius 1, self weight 2, threshold 0.5):
    in 'amid', a black patch (P 0) amid white ones has a context score of 0.8 and is labelled
    IDC; in 'alone', a white patch (P 1) amid black ones scores 0.2 and is labelled non-IDC.
    The calls map, the heatmap, the most suspicious and the histogram all follow the context
    score, never the patch's own P."""
    from conftest import TINY_CONTEXT

    folder = tmp_path / "in"
    folder.mkdir()
    for slide, centre_grey, rest_grey in (("amid", 0, 255), ("alone", 255, 0)):
        for i in range(3):
            for j in range(3):
                grey = centre_grey if (i, j) == (1, 1) else rest_grey
                name = f"{slide}_idx5_x{1 + 50 * i}_y{1 + 50 * j}.png"
                Image.new("RGB", (50, 50), (grey,) * 3).save(folder / name)
    settings = ScanSettings(
        (folder,), model=str(TINY_CONTEXT), csv=tmp_path / "r.csv", json=tmp_path / "r.json"
    )
    run_scan(dataclass_replace(settings, report=tmp_path / "r.html"), "test")
    rows = {Path(r["path"]).name: r for r in read_csv(tmp_path / "r.csv")}
    assert rows["amid_idx5_x51_y51.png"]["label"] == "IDC"  # own P 0, context 0.8
    assert rows["alone_idx5_x51_y51.png"]["label"] == "non-IDC"  # own P 1, context 0.2
    page = (tmp_path / "r.html").read_text()
    for slide, context, positive in (("amid", 0.8, True), ("alone", 0.2, False)):
        calls = slide_map(page, f"{slide} calls")
        heat = slide_map(page, f"{slide} score")
        assert calls.shape == heat.shape == (3, 3, 3)
        assert tuple(calls[1, 1]) == images.TRUTH_COLOURS[positive]
        assert tuple(heat[1, 1]) == tuple(images.colour(images.around_threshold(context, 0.5)))
        own = 1.0 - positive  # the centre patch's own P: 0 in 'amid', 1 in 'alone'
        assert tuple(heat[1, 1]) != tuple(images.colour(images.around_threshold(own, 0.5)))
    # The black centre of 'amid' ranks by its 0.8, beside the white corners (0.8), and edges
    # (6/7) first; ranked by its own P 0 it would not be shown at all.
    shown = suspicious(page)
    assert [score for score, _ in shown["amid"]] == ["0.857"] * 4 + ["0.800"] * 2
    assert ("0.800", "amid_idx5_x51_y51.png") in shown["amid"]
    report = json.loads((tmp_path / "r.json").read_text())
    counts = report["histogram"]["counts"]
    # amid: 5 at 0.8 (bin 16), 4 at 6/7 (bin 17); alone: 5 at 0.2 (bin 4), 4 at 1/7 (bin 2)
    assert {b: n for b, n in enumerate(counts) if n} == {2: 4, 4: 5, 16: 5, 17: 4}


def about_the_model(tmp_path: Path, metrics: dict[str, object]) -> list[tuple[str, str]]:
    """(figure, value) pairs 'About the model' shows for the slide-context model with `metrics`,
    and the sentence that says what they are."""
    from conftest import TINY_CONTEXT

    tmp_path.mkdir()
    model = with_metadata(TINY_CONTEXT, tmp_path / "m.onnx", metrics=metrics)
    folder = write_files(tmp_path / "in")
    run_scan(ScanSettings((folder,), model=str(model), report=tmp_path / "r.html"), "test")
    part = section((tmp_path / "r.html").read_text(), "About the model")
    (what,) = re.findall(r"Figures of what the scan does \(([^)]*)\)", part)
    heads = re.findall(r"<th>([^<]*)</th>", part)
    values = re.findall(r"<td>([^<]*)</td>", part)
    return [("what", html.unescape(what)), *zip(map(html.unescape, heads), values, strict=True)]


def test_about_the_model_gives_the_figures_of_what_the_scan_does(tmp_path: Path) -> None:
    """A slide model's test figures with slide context, not its patch-alone ones; a model
    trained by cross-validation its pooled figures, worst patient, calibration and review."""
    held_out = {"balanced_accuracy": 0.7, "roc_auc": 0.8}
    held_out["slide_context"] = {"balanced_accuracy": 0.9, "roc_auc": 0.95}  # type: ignore[assignment]
    assert about_the_model(tmp_path / "old", held_out) == [
        ("what", "held-out test patients, each patch labelled with its slide context"),
        ("balanced accuracy", "0.900"),
        ("ROC AUC", "0.950"),
    ]
    cross_validated = {
        "n": 1000,
        "balanced_accuracy": 0.85,
        "estimate": "5-fold cross-validation by patient, nested",
        "worst_patient_sensitivity": 0.71,
        "ece": 0.03,
        "review": {"share_reviewed": 0.12, "decided_accuracy": 0.97},
    }
    assert about_the_model(tmp_path / "new", cross_validated) == [
        ("what", "5-fold cross-validation by patient, nested: pooled over the held-out folds"),
        ("n", "1,000"),
        ("balanced accuracy", "0.850"),
        ("worst patient's sensitivity", "0.710"),
        ("calibration error (ECE)", "0.030"),
        ("% marked for review", "12.0%"),
        ("accuracy of the other calls", "0.970"),
    ]


def test_photos_needing_review_are_the_scans_nearest_whatever_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photos in two folders are one set: with room for 3, the 3 calls nearest the threshold of
    both folders, nearest first (tiny_review: P = sigmoid(logit(grey / 255) + 1), band [0.4,
    0.6) around 0.5)."""
    from patchscan.results import Calibration

    monkeypatch.setattr(summary_module, "REVIEW_SHOWN", 3)
    greys = {"a/1.png": 60, "a/2.png": 75, "b/3.png": 65, "b/4.png": 70, "b/5.png": 82}
    for name, grey in greys.items():
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (50, 50), (grey,) * 3).save(tmp_path / "in" / name)
    model = Path(__file__).parent / "data" / "tiny_review.onnx"
    run_scan(ScanSettings((tmp_path / "in",), model=str(model), report=tmp_path / "r.html"), "t")
    part = section((tmp_path / "r.html").read_text(), "Needs review")
    shown = [text(n) for n in re.findall(r"</b> · [^<]*<br>(.*?)</figcaption>", part)]
    score = {Path(n).name: Calibration(1.0, 1.0)(g / 255) for n, g in greys.items()}
    assert all(0.4 <= s < 0.6 for s in score.values())
    assert shown == sorted(score, key=lambda n: abs(score[n] - 0.5))[:3]
    assert {"1.png", "2.png"} & set(shown) and {"3.png", "4.png", "5.png"} & set(shown)
