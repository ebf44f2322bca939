"""The report's Summary and page, built in memory from hand-made Results: orders and framing a
scan-based test with one slide cannot tell apart (found by `make mutate`, docs/mutation.md)."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchscan import __version__
from patchscan.context import SlideContext
from patchscan.model import Model, ModelInfo
from patchscan.naming import NameInfo
from patchscan.report.html_writer import MAX_SLIDES, render
from patchscan.report.images import (
    MIN_MAP_WIDTH,
    REVIEW_COLOURS,
    TRUTH_COLOURS,
    around_threshold,
    colour,
    gradient_stops,
)
from patchscan.report.json_writer import write_json
from patchscan.report.summary import Provenance, Summary
from patchscan.results import TILE, Labels, Result, ReviewBand
from test_report_values import table_rows, text

INFO = ModelInfo("t", "0", "A test model", ("non-IDC", "IDC"), (50, 50), threshold=0.5)
LABELS = Labels(INFO.classes, 0.5, review=ReviewBand(0.4, 0.6))
CONTEXT_INFO = ModelInfo(
    "t", "0", "", INFO.classes, (50, 50), threshold=0.5, context=SlideContext(50, 1, 2.0, 0.7)
)


def summary_of(
    results: list[Result],
    started: str = "",
    finished: str = "",
    labels: Labels = LABELS,
    info: ModelInfo = INFO,
) -> Summary:
    provenance = Provenance(
        "9.9", info, Path("t.onnx"), "0" * 64, labels, "patchscan scan x", {}, started, finished
    )
    summary = Summary(provenance)
    for result in results:
        summary.add(result)
    return summary


def doubtful(group: str, index: int, probability: float) -> Result:
    """A call inside the review band, of a file that is not there (the page skips its thumb)."""
    name = NameInfo(group, index, 0, None)
    label = LABELS.of_probability(probability)
    return Result(f"/nowhere/{group}/{index}.png", name, probability, label, review=True)


def test_slides_to_review_come_most_first_then_by_name_each_nearest_the_threshold_first() -> None:
    summary = summary_of(
        [
            doubtful("b", 1, 0.45),
            doubtful("b", 2, 0.55),
            Result("/nowhere/d/1.png", NameInfo("d", 1, 0, None), 0.9, "IDC"),  # nothing doubtful
            doubtful("a", 1, 0.42),
            doubtful("a", 2, 0.57),
            doubtful("c", 1, 0.45),  # 0.05 from the threshold
            doubtful("c", 2, 0.52),  # 0.02
            doubtful("c", 3, 0.58),  # 0.08
        ]
    )
    ranked = summary.review_by_slide()
    assert [group.name for group, _ in ranked] == ["c", "a", "b"]
    assert [score for _, score, _ in ranked[0][1]] == [0.52, 0.45, 0.58]
    assert ranked[0][1][0] == ("/nowhere/c/2.png", 0.52, "IDC")
    assert [score for _, score, _ in ranked[1][1]] == [0.57, 0.42]  # 0.07 before 0.08


class _Stray(HTMLParser):
    """Text that sits directly in <main>, between the sections, rather than inside one."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # of elements open inside <main>, while in it
        self.inside = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.inside and tag not in ("br", "img", "meta"):
            self.depth += 1
        self.inside = self.inside or tag == "main"

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self.inside = False
        elif self.inside:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.inside and self.depth == 0 and data.strip():
            self.text.append(data)


def test_the_page_is_its_header_and_sections_and_nothing_between_them() -> None:
    summary = summary_of([doubtful("a", 1, 0.45)], "2026-12-04T10:00:00+00:00")
    page = render(summary)
    assert page.startswith('<!doctype html><html lang="en"><head><meta charset="utf-8">')
    assert "<title>patchscan report: t model, 1 files</title>" in page
    assert (
        "<header><h1>patchscan report: t model, 1 files</h1><p>A test model. Generated "
        "2026-12-04T10:00:00+00:00 by patchscan 9.9. Research use only, not a diagnostic "
        "device.</p></header><main>"
    ) in page
    assert page.endswith("</main></body></html>\n")
    summary.finish(interrupted=True)
    summary.provenance.finished = "2026-12-04T10:05:00+00:00"
    page = render(summary)
    assert "<h1>patchscan report: t model, 1 files (interrupted: partial results)</h1>" in page
    assert "Generated 2026-12-04T10:05:00+00:00 by" in page  # when it ended, once it has
    stray = _Stray()
    stray.feed(page)
    assert stray.text == []


def test_the_json_is_indented_utf8_with_a_final_newline(tmp_path: Path) -> None:
    """For people too: two-space indents, "é" as itself, one line end at the end."""
    summary = summary_of([doubtful("lame-é", 1, 0.45)])
    write_json(summary, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_bytes().decode("utf-8")
    assert text.startswith('{\n  "tool": {\n    "name": "patchscan",')
    assert '"group": "lame-é"' in text and text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == json.loads(json.dumps(summary.as_dict()))


def review_section(page: str) -> str:
    start = page.index('<h2 id="review"')
    return page[start : page.find("<h2", start + 3)]


def positioned(group: str, x: int, probability: float, truth: str | None = None) -> Result:
    """A patch at (x, 0) with a thumbnail: it lands on its slide's maps."""
    name = NameInfo(group, x, 0, truth)
    label = LABELS.of_probability(probability)
    review = probability in LABELS.review  # type: ignore[operator]
    tile = np.full((TILE, TILE, 3), 200, np.uint8)
    return Result(f"/nowhere/{group}/{x}.png", name, probability, label, tile=tile, review=review)


def test_the_review_table_gives_each_slides_count_and_share_and_opens_only_the_first(
    tmp_path: Path,
) -> None:
    """Slides ranked by doubtful calls; the share is of the slide's classified patches (its
    errors left out); the first slide's thumbnails open, the others a click away; each
    thumbnail says its score and label."""
    png = tmp_path / "p.png"
    Image.new("RGB", (50, 50), (180, 90, 140)).save(png)
    slide = [doubtful("c", i, s) for i, s in enumerate((0.45, 0.52, 0.58))]
    slide[1].path = str(png)
    errors = [Result("/nowhere/c/9.png", NameInfo("c", 9, 0, None), error="broken")]
    sure = [Result("/nowhere/c/8.png", NameInfo("c", 8, 0, None), 0.9, "IDC")]
    others = [doubtful("a", 1, 0.42), doubtful("a", 2, 0.57)]
    page = render(summary_of([*slide, *errors, *sure, *others]))
    part = review_section(page)
    assert table_rows(part) == [["c", "3", "75.0%"], ["a", "2", "100.0%"]]
    blocks = re.findall(r"<details( open)?><summary>(.*?)</summary>", part)
    assert [(opened, text(s)) for opened, s in blocks] == [
        (" open", "c · 3 to review"),
        ("", "a · 2 to review"),
    ]
    captions = [text(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", part)]
    assert captions == ["0.520 · IDCp.png"]


def test_a_slide_card_shows_its_maps_named_and_sized_and_its_counts(tmp_path: Path) -> None:
    results = [
        positioned("s", 0, 0.9, "IDC"),
        positioned("s", 50, 0.55, "non-IDC"),
        positioned("s", 100, 0.1, "non-IDC"),
        Result("/nowhere/s/9.png", NameInfo("s", 150, 0, None), error="broken"),
    ]
    page = render(summary_of(results))
    card = page[page.index('<details class="slide"') :]
    card = card[: card.index("</details>")]
    assert text(card[: card.index("</summary>")]) == "s · 3 patches · 2 IDC (66.7%) · 1 to review"
    figures = re.findall(
        r'<figure style="width:(\d+)px"><img alt="([^"]*)".*?width="(\d+)">'
        r"<figcaption>(.*?)</figcaption>",
        card,
    )
    width = str(MIN_MAP_WIDTH)  # a 3-patch slide is enlarged to the smallest map width
    assert figures == [
        (width, "s tissue", width, "tissue (rebuilt from patches)"),
        (width, "s score", width, "P(IDC)"),
        (width, "s calls", width, "calls"),
        (width, "s truth", width, "truth from the names"),
    ]


def test_skipped_files_and_review_calls_are_counted_each_time() -> None:
    summary = summary_of([doubtful("a", 1, 0.45), doubtful("a", 2, 0.42), doubtful("a", 3, 0.55)])
    for _ in range(3):
        summary.add_skipped("not an image")
    counts = summary.as_dict()
    assert counts["skipped"] == {"not an image": 3}
    assert summary.review_counts == {"non-IDC": 2, "IDC": 1} and summary.review_total == 3


def test_the_maps_legend_marks_the_threshold_the_positioned_patches_were_called_at() -> None:
    """A slide-context model's patches are called at its context threshold, others at the
    model's own: the scale says which."""
    with_context = Labels(INFO.classes, 0.5, context_threshold=0.7)
    for labels, model, marked in (
        (LABELS, INFO, ">threshold 0.5</text>"),
        (with_context, CONTEXT_INFO, ">threshold 0.7</text>"),
    ):
        summary = summary_of([positioned("s", 0, 0.9)], labels=labels, info=model)
        page = render(summary)
        assert marked in page
        stops = re.findall(r'<stop offset="([0-9.]+)" stop-color="([^"]+)"/>', page)
        assert stops == [(f"{o:.3f}", c) for o, c in gradient_stops()] and len(stops) > 2


def legend(page: str) -> str:
    start = page.index("<div class='legend'>")
    return page[start : page.index("</div>", start)]


def swatches(part: str) -> list[tuple[str, str]]:
    return re.findall(
        r'<span class="swatch" style="background:rgb(\([^)]*\))"></span>([^<]*)', part
    )


def test_the_legend_gives_the_scale_and_each_calls_colour_with_its_label() -> None:
    results = [positioned("s", 0, 0.9, "IDC")]
    banded = legend(render(summary_of(results)))
    assert "<span>heatmap: P(IDC) <svg" in banded
    scale = banded[banded.index("<svg") : banded.index("</svg>") + 6]
    assert scale.count("<stop ") == len(gradient_stops())
    assert '<rect x="10" y="2" width="240" height="12" fill="url(#scale)"/>' in scale
    assert ">0</text>" in scale and ">threshold 0.5</text>" in scale and ">1</text>" in scale
    rgb = {key: str(tuple(int(v) for v in c)) for key, c in TRUTH_COLOURS.items()}
    review = {key: str(tuple(int(v) for v in c)) for key, c in REVIEW_COLOURS.items()}
    assert len({*rgb.values(), *review.values()}) == 4  # four colours a reader can tell apart
    assert swatches(banded) == [
        (rgb[True], "IDC"),
        (review[True], "IDC, needs review"),
        (rgb[False], "non-IDC"),
        (review[False], "non-IDC, needs review"),
    ]
    no_bands = Labels(INFO.classes, 0.5)
    plain = legend(render(summary_of(results, labels=no_bands)))
    assert swatches(plain) == [(rgb[True], "IDC"), (rgb[False], "non-IDC")]


def sums_of(mean: tuple[float, float, float], std: tuple[float, float, float]) -> tuple[float, ...]:
    """A sampled patch's colour sums (stain.colour_sums) for 1,000 tissue pixels of these
    statistics."""
    n = 1000.0
    return (
        n,
        *(n * m for m in mean),
        *(n * (s * s + m * m) for m, s in zip(mean, std, strict=True)),
    )


# A model with a training colour range: the training slides' tissue colours (l-alpha-beta
# mean and spread) and their spread between slides, flagged beyond 3 of those spreads.
MEAN, STD = (3.8, -0.02, 0.016), (0.12, 0.018, 0.007)
STAINED = ModelInfo(
    "t", "0", "", INFO.classes, (50, 50), threshold=0.5,
    stain={
        "reference": {"mean": list(MEAN), "std": list(STD)},
        "spread": {"mean": [0.05, 0.01, 0.005], "std": [0.05, 0.01, 0.005]},
        "drift_limit": 3,
    },
)  # fmt: skip


def test_the_slide_table_gives_each_slides_review_count_and_colour_drift_flagged_past_the_limit() -> (
    None
):
    mean, std, info = MEAN, STD, STAINED
    far = (mean[0] + 0.4, mean[1], mean[2])  # 8 spreads away in l
    results = [
        Result("/n/in/1.png", NameInfo("in", 0, 0, None), 0.9, "IDC", colour=sums_of(mean, std)),
        Result("/n/in/2.png", NameInfo("in", 50, 0, None), 0.45, "non-IDC", review=True),
        Result(
            "/n/out/1.png", NameInfo("out", 0, 0, None), 0.2, "non-IDC", colour=sums_of(far, std)
        ),
        Result("/n/none/1.png", NameInfo("none", 0, 0, None), 0.3, "non-IDC"),
    ]
    page = render(summary_of(results, info=info))
    part = page[page.index('<h2 id="slide-table"') :]
    head = part[part.index("<table><tr>") : part.index("</tr>")]
    assert re.findall(r"<th[^>]*>(.*?)</th>", head) == [
        "slide / patient", "files", "IDC", "% IDC", "need review", "errors", "colour drift"
    ]  # fmt: skip
    assert table_rows(part) == [
        ["in", "2", "1", "50.0%", "1", "0", "0.0"],
        ["none", "1", "0", "0.0%", "0", "0", "–"],
        ["out", "1", "0", "0.0%", "0", "0", "8.0 ⚠"],
    ]
    assert "<td class='warn'>8.0 ⚠</td>" in part and "<td>0.0</td>" in part
    no_bands = render(summary_of(results, labels=Labels(INFO.classes, 0.5), info=info))
    part = no_bands[no_bands.index('<h2 id="slide-table"') :]
    assert table_rows(part)[0] == ["in", "2", "1", "50.0%", "0", "0.0"]


def test_the_contents_link_every_section_in_order_and_the_positive_count_stands_out() -> None:
    page = render(summary_of([doubtful("a", 1, 0.45), doubtful("a", 2, 0.55)]))
    nav = page[page.index("<nav") : page.index("</nav>") + 6]
    assert nav == (
        '<nav id="contents" aria-label="contents"><a href="#review">Needs review (2)</a>'
        '<a href="#slide-table">Per slide / patient</a>'
        '<a href="#suspicious">Most suspicious, per slide</a><a href="#histogram">Score histogram</a>'
        '<a href="#provenance">Provenance</a><a href="#model">About the model</a></nav>'
    )
    cards = re.findall(r'<div class="(card[^"]*)"><b>([^<]*)</b><span>([^<]*)</span>', page)
    assert cards == [
        ("card", "1", "non-IDC · 50.0% of classified"),
        ("card pos", "1", "IDC · 50.0% of classified"),
        ("card rev", "2", "need review · 100.0% of classified"),
        ("card err", "0", "unreadable files"),
        ("card", "0", "other files skipped"),
    ]
    nothing_classified = render(
        summary_of([Result("/n/a/1.png", NameInfo("a", 1, 0, None), error="x")])
    )
    shares = re.findall(
        r'<div class="card[^"]*"><b>[^<]*</b><span>([^<]*)</span>', nothing_classified
    )
    assert shares[:3] == ["non-IDC · –", "IDC · –", "need review · –"]


def test_figures_a_crafted_model_gives_as_anything_but_numbers_are_shown_as_text() -> None:
    metrics = {
        "estimate": "cv",
        "n": True,
        "recall": "high",
        "review": {"share_reviewed": True, "decided_accuracy": "n/a"},
    }
    info = ModelInfo("t", "0", "", INFO.classes, (50, 50), threshold=0.5, metrics=metrics)
    broken = Result("/n/a/9.png", NameInfo("a", 9, 0, None), error="broken")
    page = render(summary_of([doubtful("a", 1, 0.45), broken], info=info))
    assert '<h2 id="errors" class="warn">Files that could not be classified (1)</h2>' in page
    about = page[page.index('<h2 id="model">') :]
    head = re.findall(r"<th>([^<]*)</th>", about)
    values = re.findall(r"<td>([^<]*)</td>", about)
    assert dict(zip(head, values, strict=True)) == {
        "n": "True",
        "sensitivity": "high",
        "% marked for review": "True",
        "accuracy of the other calls": "n/a",
    }


class _Loose(HTMLParser):
    """Text that sits directly in an element meant to hold only other elements (a table row,
    the contents bar, a row of cards or thumbnails, a slide's maps): a reader would see it
    outside every cell and caption."""

    CONTAINERS = frozenset(
        {"main", "table", "tr", "nav", "ul", "details", "figure", "svg", "defs", "lineargradient"}
    )
    CLASSES = frozenset({"cards", "thumbs", "maps", "legend"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[bool] = []  # per open element: whether it holds elements only
        self.loose: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img", "meta", "wbr", "stop", "rect", "line"):
            return
        css = dict(attrs).get("class") or ""
        self.open.append(tag in self.CONTAINERS or (tag == "div" and css in self.CLASSES))

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "img", "meta", "wbr", "stop", "rect", "line") and self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] and data.strip():
            self.loose.append(data)


def loose_text(page: str) -> list[str]:
    parser = _Loose()
    parser.feed(page)
    return parser.loose


def four_slides() -> list[Result]:
    """Four slides with positioned patches, one of them named to wrap, and a one-patch slide
    whose one call is doubtful."""
    return [
        *(positioned("a_b-c", x, 0.9, "IDC") for x in (0, 50, 100)),
        *(positioned("d", x, 0.8) for x in (0, 50)),
        positioned("e", 0, 0.7),
        positioned("f", 0, 0.45),
        Result("/n/f/9.png", NameInfo("f", 9, 0, None), error="broken"),
    ]


def test_nothing_stands_loose_between_a_pages_rows_cards_thumbnails_and_maps(
    tmp_path: Path,
) -> None:
    """Pages with two or more of everything that is listed (rows, thumbnails, bars, errors,
    skipped reasons), with and without a review band, truth and a colour range; a photo scan;
    and a scan where nothing could be read."""
    png = tmp_path / "p.png"
    Image.new("RGB", (50, 50), (180, 90, 140)).save(png)
    slides = [*four_slides(), positioned("f", 50, 0.55, "IDC")]
    for result in slides:
        result.path = str(png)
    broken = [Result(f"/n/f/{i}.png", NameInfo("f", None, None, None), error="x") for i in (1, 2)]
    photos = [Result(str(png), NameInfo("", None, None, None), p, "IDC") for p in (0.7, 0.9)]
    pages = [
        summary_of([*slides, *broken], labels=labels, info=info)
        for labels in (LABELS, Labels(INFO.classes, 0.5))
        for info in (INFO, STAINED)
    ]
    with_context = Labels(INFO.classes, 0.5, context_threshold=0.7)
    in_context = [positioned("c", 50 * i, 0.9) for i in range(2)]
    for result in in_context:
        result.context = 0.9
    loose = Result("/n/x.png", NameInfo("x", None, None, None), 0.6, "IDC")
    no_truth = [positioned("n", 50 * i, 0.9) for i in range(2)]
    pages += [
        summary_of(photos),
        summary_of(broken),
        summary_of([loose, *in_context], labels=with_context, info=CONTEXT_INFO),
        summary_of(no_truth),
    ]
    for summary in pages:
        summary.add_skipped("not an image")
        summary.add_skipped("hidden")
        assert loose_text(render(summary)) == []


def test_slide_cards_open_the_first_three_and_say_what_each_slide_holds() -> None:
    page = render(summary_of(four_slides()))
    cards = re.findall(
        r'<details class="slide" id="(slide-\d+)"( open)?><summary>(.*?)</summary>', page
    )
    assert [(anchor, opened, text(summary)) for anchor, opened, summary in cards] == [
        ("slide-0", " open", "a_b-c · 3 patches · 3 IDC (100.0%) · 0 to review"),
        ("slide-1", " open", "d · 2 patches · 2 IDC (100.0%) · 0 to review"),
        ("slide-2", " open", "e · 1 patches · 1 IDC (100.0%) · 0 to review"),
        ("slide-3", "", "f · 1 patches · 0 IDC (0.0%) · 1 to review"),
    ]
    assert "<b>a_<wbr>b-<wbr>c</b>" in page  # a long name wraps after _ and - only
    review = table_rows(review_section(page))
    assert review == [["f", "1", "100.0%"]]  # of its one classified patch, not of two files
    plain = render(summary_of(four_slides(), labels=Labels(INFO.classes, 0.5)))
    assert "to review" not in plain


def test_provenance_names_what_made_the_results() -> None:
    page = render(
        summary_of(
            [doubtful("a", 1, 0.45)], "2026-12-04T10:00:00+00:00", "2026-12-04T10:01:00+00:00"
        )
    )
    table = page[page.index('<table class="prov">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr><th class="l">([^<]*)</th><td>(.*?)</td></tr>', table)
    assert rows[:6] == [
        ("tool", "patchscan 9.9"),
        ("model", "t 0 (t.onnx)"),
        ("model sha256", f"<code>{'0' * 64}</code>"),
        ("threshold", "0.5 → IDC when P ≥ threshold"),
        ("command", "<code>patchscan scan x</code>"),
        ("started / finished", "2026-12-04T10:00:00+00:00 / 2026-12-04T10:01:00+00:00"),
    ]


def test_slides_outside_the_training_colours_are_named_first_in_name_order() -> None:
    mean, std, info = MEAN, STD, STAINED
    far, farther = (mean[0] + 0.4, *mean[1:]), (mean[0] + 0.5, *mean[1:])
    results = [
        positioned("z", 0, 0.9),
        positioned("m", 0, 0.9),
        positioned("a", 0, 0.2),
    ]
    results[0].colour, results[1].colour = sums_of(far, std), sums_of(farther, std)  # type: ignore[assignment]
    results[2].colour = sums_of(mean, std)  # type: ignore[assignment]
    page = render(summary_of(results, info=info))
    warning = text(
        page[
            page.index("<p class='warn' id='drift'>") : page.index("</p>", page.index("id='drift'"))
        ]
    )
    assert warning.startswith(
        "2 slide(s) outside what the model was trained on (tissue colours more than 3 "
    )
    assert "training slides): m (10.0), z (8.0). Their calls" in warning
    cards = re.findall(r'<details class="slide"[^>]*><summary>(.*?)</summary>', page)
    assert [c.endswith("<span class='warn'>colours unlike training</span>") for c in cards] == [
        True,
        True,
        False,
    ]


def test_a_scan_without_doubtful_calls_says_so_and_what_the_band_guarantees() -> None:
    labels = Labels(INFO.classes, 0.5, review=ReviewBand(0.4, 0.6), review_target=0.05)
    page = render(summary_of([positioned("a", 0, 0.9)], labels=labels))
    part = review_section(page)
    assert part.startswith('<h2 id="review">Needs review (0)</h2>')
    assert text(part) == (
        "Needs review (0)No call fell in the model's review band. Outside the band, the model's "
        "calls were wrong at most 5% of the time on held-out data (95% confidence)."
    )
    assert 'id="review"' not in render(
        summary_of([positioned("a", 0, 0.9)], labels=Labels(INFO.classes, 0.5))
    )


def test_provenance_gives_the_slide_context_rule_only_for_a_model_that_has_one() -> None:
    with_context = Labels(INFO.classes, 0.5, context_threshold=0.7)
    pages = {
        "context": render(
            summary_of([positioned("s", 0, 0.9)], labels=with_context, info=CONTEXT_INFO)
        ),
        "plain": render(summary_of([positioned("s", 0, 0.9)])),
    }
    rows = {
        kind: dict(re.findall(r'<tr><th class="l">([^<]*)</th><td>(.*?)</td></tr>', page))
        for kind, page in pages.items()
    }
    assert html.unescape(rows["context"]["slide context"]) == (
        "a patch with a position is labelled IDC when the weighted mean of its P (×2) and its "
        "neighbours' (up to 1 patches away) is ≥ 0.7"
    )
    assert "slide context" not in rows["plain"] and len(rows["plain"]) == 6
    assert "heatmap: slide-context score" in pages["context"]
    assert "<figcaption>slide-context score</figcaption>" in pages["context"]
    assert "heatmap: P(IDC)" in pages["plain"]


def test_the_agreement_section_gives_the_metrics_and_the_confusion_matrix_by_class() -> None:
    results = [
        positioned("s", 0, 0.9, "IDC"),  # true positive
        positioned("s", 50, 0.8, "non-IDC"),  # false positive
        positioned("s", 100, 0.2, "non-IDC"),  # true negative
        positioned("s", 150, 0.1, "IDC"),  # false negative
        positioned("s", 200, 0.3, "non-IDC"),  # true negative
    ]
    page = render(summary_of(results))
    part = page[
        page.index('<h2 id="agreement">') : page.index("<h2", page.index('<h2 id="agreement">') + 3)
    ]
    assert "precision, recall and F1 are for IDC;" in part
    first, second = part.split("</table>")[:2]
    assert re.findall(r"<th>([^<]*)</th>", first) == [
        "n", "accuracy", "balanced accuracy", "precision", "recall", "f1", "roc auc"
    ]  # fmt: skip
    assert re.findall(r"<td>([^<]*)</td>", first)[:4] == ["5", "0.600", "0.583", "0.500"]
    assert re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", second) == [
        "true \\ predicted", "non-IDC", "IDC", "non-IDC", "2", "1", "IDC", "1", "1"
    ]  # fmt: skip


def test_slides_past_the_carded_ones_are_counted_in_the_tables_note() -> None:
    results = [positioned(f"s{i:02}", 0, 0.9) for i in range(MAX_SLIDES + 1)]
    page = render(summary_of(results))
    note = text(
        page[
            page.index('<h2 id="slide-table"') : page.index(
                "<table", page.index('<h2 id="slide-table"')
            )
        ]
    )
    assert note.endswith(f"The 1 slides past the first {MAX_SLIDES} have no card.")
    assert page.count('<details class="slide"') == MAX_SLIDES
    few = render(summary_of(results[:MAX_SLIDES]))
    assert "have no card" not in few


def histogram_svg(page: str) -> str:
    start = page.index('<svg width="600"')
    return page[start : page.index("</svg>", start) + 6]


def test_the_histogram_draws_each_bin_to_scale_coloured_around_the_threshold() -> None:
    """Bars 30 px apart, 28 wide, the tallest 160 high; each coloured by its middle's place
    around the threshold and titled with its range and count; the axis under them."""
    results = [positioned("s", 50 * i, p) for i, p in enumerate((0.02, 0.03, 0.04, 0.04, 0.97))]
    page = render(summary_of(results))
    svg = histogram_svg(page)
    assert svg.startswith('<svg width="600" height="178" role="img" aria-label="histogram">')
    bars = re.findall(
        r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="rgb\(([^)]*)\)">'
        r"<title>([^<]*)</title></rect>",
        svg,
    )
    assert len(bars) == 20

    def fill(bin_: int) -> str:
        rgb = colour(around_threshold(np.array([(bin_ + 0.5) / 20]), 0.5))[0]
        return ", ".join(str(int(c)) for c in rgb)

    assert bars[0] == ("1.0", "0.0", "28.0", "160.0", fill(0), "0.00–0.05: 4")
    assert bars[19] == ("571.0", "120.0", "28.0", "40.0", fill(19), "0.95–1.00: 1")
    assert bars[10] == ("301.0", "160.0", "28.0", "0.0", fill(10), "0.50–0.55: 0")
    assert fill(0) != fill(19)
    assert '<text x="0" y="174" font-size="11">0</text>' in svg
    assert '<text x="592" y="174" font-size="11">1</text>' in svg
    assert (
        '<line x1="300.0" x2="300.0" y1="0" y2="160" stroke="#000" stroke-dasharray="4 3"/>' in svg
    )
    assert '<text x="304.0" y="12" font-size="11">threshold 0.5</text>' in svg
    note = text(
        page[
            page.index('<h2 id="histogram"') : page.index("<svg", page.index('<h2 id="histogram"'))
        ]
    )
    assert note.endswith("Files per bin of the score each was labelled by, P(IDC); tallest bar 4.")


def test_two_thresholds_are_each_drawn_and_named_the_most_used_first() -> None:
    """A slide-context model's positioned patches are called at its context threshold, a loose
    file at the model's own: both lines, named, the one more files were called at on top."""
    with_context = Labels(INFO.classes, 0.5, context_threshold=0.7)
    loose = Result("/n/x.png", NameInfo("x", None, None, None), 0.6, "IDC")
    results = [positioned("s", 50 * i, 0.9) for i in range(3)]
    for r in results:
        r.context = 0.9
    page = render(summary_of([loose, *results], labels=with_context, info=CONTEXT_INFO))
    svg = histogram_svg(page)
    assert '<text x="424.0" y="12" font-size="11">threshold 0.7 (slide context)</text>' in svg
    assert '<text x="304.0" y="25" font-size="11">threshold 0.5 (patch alone)</text>' in svg
    note = text(
        page[
            page.index('<h2 id="histogram"') : page.index("<svg", page.index('<h2 id="histogram"'))
        ]
    )
    assert "the slide-context score for patches with a position, else P(IDC)" in note


def test_most_suspicious_shows_each_slides_highest_or_a_photo_scans_highest(tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    Image.new("RGB", (50, 50), (180, 90, 140)).save(png)
    results = [positioned("b", 0, 0.9), positioned("b", 50, 0.8), positioned("a", 0, 0.3)]
    for r in results:
        r.path = str(png)
    page = render(summary_of(results))
    part = page[page.index('<h2 id="suspicious"') :]
    part = part[: part.index("<h2", 3)]
    assert text(part).startswith(
        "Most suspicious, per slideEach slide's 6 patches with the highest P(IDC)"
    )
    blocks = re.findall(r"<h3>(.*?)</h3><div class='thumbs'>(.*?)</div>", part)
    assert [(text(h), re.findall(r"<b>([^<]*)</b>", t)) for h, t in blocks] == [
        ("b · 2 IDC", ["0.900", "0.800"]),
        ("a · 0 IDC", ["0.300"]),
    ]
    photos = [
        Result(str(png), NameInfo("", None, None, None), p, LABELS.of_probability(p))
        for p in (0.2, 0.7)
    ]
    page = render(summary_of(photos))
    part = page[page.index('<h2 id="suspicious"') :]
    part = part[: part.index("<h2", 3)]
    assert text(part).startswith("Most suspiciousThe 2 files with the highest P(IDC).")
    assert re.findall(r"<b>([^<]*)</b>", part) == ["0.700", "0.200"]


def test_the_json_says_exactly_what_the_scan_found() -> None:
    """Every field of the JSON report for a small scan worked out by hand: a slide of three
    patches called by slide context (one doubtful, one missed), a loose doubtful photo, a broken
    file and two skipped ones."""
    model = ModelInfo(
        "t", "0", "", INFO.classes, (50, 50), threshold=0.5,
        context=SlideContext(50, 1, 2.0, 0.7),
        review={"confidence": 0.95, "method": "LTT", "calibration_set": {"patients": 32}},
    )  # fmt: skip
    labels = Labels(
        INFO.classes, 0.5, context_threshold=0.75, review=ReviewBand(0.4, 0.6),
        context_review=ReviewBand(0.6, 0.8), review_target=0.05,
    )  # fmt: skip

    def patch(x: int, probability: float, context: float, truth: str) -> Result:
        return Result(
            f"/n/s/{x}.png", NameInfo("s", x, 0, truth), probability, labels.of_context(context),
            context=context, review=context in labels.context_review,  # type: ignore[operator]
        )  # fmt: skip

    summary = summary_of(
        [
            patch(0, 0.9, 0.95, "IDC"),
            patch(50, 0.6, 0.65, "IDC"),  # doubtful, and missed
            patch(100, 0.1, 0.2, "non-IDC"),
            Result("/n/x/p.png", NameInfo("x", None, None, None), 0.45, "non-IDC", review=True),
            Result("/n/s/150.png", NameInfo("s", 150, 0, None), error="broken"),
        ],
        "2026-12-04T10:00:00+00:00",
        "2026-12-04T10:01:00+00:00",
        labels=labels,
        info=model,
    )
    summary.add_skipped("not an image")
    summary.add_skipped("not an image")
    report = summary.as_dict()
    groups, metrics = report.pop("groups"), report.pop("metrics")
    assert report == {
        "tool": {"name": "patchscan", "version": "9.9"},
        "model": {
            "name": "t", "version": "0", "path": "t.onnx", "sha256": "0" * 64, "threshold": 0.5,
            "slide_context": {"step": 50, "radius": 1, "self_weight": 2.0, "threshold": 0.75},
            "classes": ["non-IDC", "IDC"], "positive_class": "IDC",
        },
        "settings": {},
        "command_line": "patchscan scan x",
        "started": "2026-12-04T10:00:00+00:00",
        "finished": "2026-12-04T10:01:00+00:00",
        "interrupted": False,
        "files": 5,
        "counts": {"non-IDC": 3, "IDC": 1},
        "review": {
            "total": 2, "counts": {"non-IDC": 2, "IDC": 0}, "target_error": 0.05,
            "confidence": 0.95, "method": "LTT", "calibration_set": {"patients": 32},
        },
        "errors": 1,
        "error_list": [{"path": "/n/s/150.png", "error": "broken"}],
        "skipped": {"not an image": 2},
        "histogram": {
            "bins": 20,
            "counts": [0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
            "of": "the score each label was decided on (slide context where applied)",
        },
    }  # fmt: skip
    slide, photo = groups
    slide_metrics = slide.pop("metrics")
    assert slide == {
        "group": "s", "files": 4, "classified": 3, "positive": 1,
        "positive_fraction": pytest.approx(1 / 3), "review": 1,
        "mean_probability": pytest.approx((0.9 + 0.6 + 0.1) / 3), "errors": 1,
        "truth_positive": 2, "colour_drift": None, "outside_training": False,
    }  # fmt: skip
    assert (slide_metrics["recall"], slide_metrics["roc_auc"]) == (0.5, 1.0)
    assert photo == {
        "group": "x", "files": 1, "classified": 1, "positive": 0, "positive_fraction": 0.0,
        "review": 1, "mean_probability": 0.45, "errors": 0,
        "colour_drift": None, "outside_training": False,
    }  # fmt: skip
    assert metrics["n"] == 3 and metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"] == [[1, 0], [1, 1]] and metrics["roc_auc"] == 1.0
    assert metrics["confusion_matrix_labels"] == ["non-IDC", "IDC"]


def table_head(page: str, anchor: str) -> list[str]:
    part = page[page.index(f'<h2 id="{anchor}"') :]
    return re.findall(r"<th[^>]*>(.*?)</th>", part[: part.index("</tr>")])


def page_section(page: str, anchor: str) -> str:
    start = page.index(f'<h2 id="{anchor}"')
    end = page.find("<h2", start + 3)
    return page[start : end if end > 0 else len(page)]


def test_the_slide_tables_columns_follow_what_the_scan_has() -> None:
    """need review only with a band, truth columns only with truth in the names, colour drift
    only for a model with a colour range."""
    truth = [positioned("s", 0, 0.9, "IDC"), positioned("s", 50, 0.2, "non-IDC")]
    banded = table_head(render(summary_of(truth)), "slide-table")
    assert banded == [
        "slide / patient", "files", "IDC", "% IDC", "need review", "errors", "true % IDC",
        "balanced acc.",
    ]  # fmt: skip
    no_band = Labels(INFO.classes, 0.5)
    plain = table_head(render(summary_of([positioned("s", 0, 0.9)], labels=no_band)), "slide-table")
    assert plain == ["slide / patient", "files", "IDC", "% IDC", "errors"]
    page = render(summary_of(truth))
    note = page[
        page.index('<h2 id="slide-table"') : page.index(
            "<table", page.index('<h2 id="slide-table"')
        )
    ]
    assert text(note).endswith("Most IDC patches first; a name opens the slide's card.")


def test_sections_say_what_they_show_and_leave_out_what_did_not_happen() -> None:
    no_target = Labels(INFO.classes, 0.5, review=ReviewBand(0.4, 0.6))
    page = render(summary_of([doubtful("a", 1, 0.45), positioned("s", 0, 0.9)], labels=no_target))
    intro = text(review_section(page))
    assert intro.startswith("Needs review (1)Calls whose score lies in the model's review band: ")
    assert "but a person should look.  Slides with the most first;" in intro  # no guarantee
    assert '<a href="#slides">Slides</a>' in page
    slides = text(page[page.index('<h2 id="slides"') : page.index("<div class='legend'>")])
    assert slides == (
        "SlidesEach patch placed at its x, y. The heatmap colours the P(IDC) each patch was "
        "labelled by, around its threshold: warm where the call is IDC. The calls map shows the "
        "labels the CSV holds."
    )
    cards = re.findall(r'<details class="slide"[^>]*><summary>(.*?)</summary>', page)
    assert [text(c) for c in cards] == ["s · 1 patches · 1 IDC (100.0%) · 0 to review"]
    plain = render(summary_of([positioned("s", 0, 0.9)], labels=Labels(INFO.classes, 0.5)))
    cards = re.findall(r'<details class="slide"[^>]*><summary>(.*?)</summary>', plain)
    assert [text(c) for c in cards] == ["s · 1 patches · 1 IDC (100.0%)"]
    skipped_only = summary_of([positioned("s", 0, 0.9)])
    skipped_only.add_skipped("not an image")
    errors = page_section(render(skipped_only), "errors")
    assert "<table" not in errors and "more (all are in the CSV)" not in errors
    assert text(errors) == "Other filesSkipped (not rows):1 not an image"


def test_about_the_model_gives_its_training_and_the_figures_it_carries() -> None:
    training = {"data": "32 patients", "split": "by patient", "threshold_rule": "best F1"}
    metrics = {"estimate": "8-fold CV", "n": 100, "roc_auc": 0.9}
    info = ModelInfo(
        "t", "0", "A test model", INFO.classes, (50, 50), threshold=0.5, metrics=metrics,
        training=training, license="CC0",
    )  # fmt: skip
    about = page_section(render(summary_of([doubtful("a", 1, 0.45)], info=info)), "model")
    assert about.startswith('<h2 id="model">About the model</h2><p>A test model.</p>')
    assert loose_text(about) == []
    rows = re.findall(r"<tr><th class='l'>([^<]*)</th><td class='l'>([^<]*)</td></tr>", about)
    assert rows == [
        ("trained on", "32 patients"), ("split", "by patient"), ("threshold rule", "best F1")
    ]  # fmt: skip
    assert (
        "<table><tr><th>n</th><th>ROC AUC</th></tr><tr><td>100</td><td>0.900</td></tr></table>"
        in about
    )
    assert about.endswith("<p class='note'>CC0</p></main></body></html>\n")
    bare = ModelInfo("t", "0", "A test model", INFO.classes, (50, 50), threshold=0.5)
    about = page_section(render(summary_of([doubtful("a", 1, 0.45)], info=bare)), "model")
    assert "<table class='prov'></table>" in about and "<tr><th>" not in about
    assert "<table><tr></tr>" not in about


def test_a_model_without_a_review_band_reports_no_review_in_the_json() -> None:
    summary = summary_of([doubtful("a", 1, 0.45)], labels=Labels(INFO.classes, 0.5))
    assert summary.as_dict()["review"] is None
    only_context = Labels(
        INFO.classes, 0.5, context_threshold=0.5, context_review=ReviewBand(0.4, 0.6)
    )
    assert summary_of([], labels=only_context).as_dict()["review"]["total"] == 0


def test_a_slides_drift_is_given_to_three_places_and_the_limit_itself_is_inside() -> None:
    mean, std, info = MEAN, STD, STAINED
    at_limit, beyond = positioned("at", 0, 0.9), positioned("far", 0, 0.9)
    at_limit.colour = sums_of((mean[0] + 0.15, *mean[1:]), std)  # type: ignore[assignment]
    beyond.colour = sums_of((mean[0] + 0.20617, *mean[1:]), std)  # type: ignore[assignment]
    groups = summary_of([at_limit, beyond], info=info).as_dict()["groups"]
    assert [(g["group"], g["colour_drift"], g["outside_training"]) for g in groups] == [
        ("at", 3.0, False),
        ("far", 4.123, True),
    ]


def test_errors_all_listed_need_no_more_note_and_no_skipped_list_without_skips() -> None:
    broken = [Result(f"/n/s/{i}.png", NameInfo("s", None, None, None), error="x") for i in (1, 2)]
    results = [positioned("s", 0, 0.9), positioned("s", 50, 0.9), *broken]
    summary = summary_of(results)
    part = page_section(render(summary), "errors")
    assert part.startswith(
        '<h2 id="errors" class="warn">Files that could not be classified (2)</h2>'
    )
    assert "more (all are in the CSV)" not in part and "Skipped" not in part
    groups = summary.as_dict()["groups"]
    assert [(g["group"], g["files"], g["errors"]) for g in groups] == [("s", 4, 2)]


def test_start_records_the_tool_and_when_and_finish_when_it_ended() -> None:
    model = Model(Path("t.onnx"), "0" * 64, INFO)
    summary = Summary.start(model, LABELS, "patchscan scan x", {"workers": 2}, keep_tiles=False)
    p = summary.provenance
    assert p.tool_version == __version__ and p.settings == {"workers": 2} and not summary.keep_tiles
    started = dt.datetime.fromisoformat(p.started)
    assert (
        started.tzinfo is not None and abs(dt.datetime.now(dt.UTC) - started).total_seconds() < 60
    )
    assert p.finished == "" and not p.interrupted
    given = Summary.start(
        model, LABELS, "x", {}, keep_tiles=True, started="2026-12-04T10:00:00+00:00"
    )
    assert given.provenance.started == "2026-12-04T10:00:00+00:00"
    summary.finish()
    assert dt.datetime.fromisoformat(p.finished) >= started and not p.interrupted
    summary.finish(interrupted=True)
    assert p.interrupted
