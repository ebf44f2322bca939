"""The report's Summary and page, built in memory from hand-made Results: orders and framing a
scan-based test with one slide cannot tell apart (found by `make mutate`, docs/mutation.md)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from patchscan.model import ModelInfo
from patchscan.naming import NameInfo
from patchscan.report.html_writer import render
from patchscan.report.json_writer import write_json
from patchscan.report.summary import Provenance, Summary
from patchscan.results import Labels, Result, ReviewBand

INFO = ModelInfo("t", "0", "A test model", ("non-IDC", "IDC"), (50, 50), threshold=0.5)
LABELS = Labels(INFO.classes, 0.5, review=ReviewBand(0.4, 0.6))


def summary_of(results: list[Result], started: str = "", finished: str = "") -> Summary:
    provenance = Provenance(
        "9.9", INFO, Path("t.onnx"), "0" * 64, LABELS, "patchscan scan x", {}, started, finished
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
