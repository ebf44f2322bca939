"""The CSV is opened by lab staff in Excel: no cell may be read as a formula (OWASP CSV injection),
and a program can still get every value back exactly."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from patchscan.cli import main
from patchscan.naming import NameInfo
from patchscan.report.csv_writer import COLUMNS, CsvWriter, append_rows
from patchscan.results import Result

LEADS = ["=", "+", "-", "@", "\t", "\r"]


def raw(cell: str) -> str:
    """The rule the README gives programs: drop the ' a cell begins with."""
    return cell[1:] if cell.startswith("'") else cell


def result(text: str) -> Result:
    name = NameInfo(text, 1, 2, text)
    return Result(text, name, probability=0.25, label=text, error=text)


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_file(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:  # a CR inside a cell stays one
        return read(handle.read())


@pytest.mark.parametrize("lead", [*LEADS, "'"])
def test_a_cell_a_spreadsheet_would_run_is_neutralised(lead: str) -> None:
    text = f'{lead}HYPERLINK("http://x","y")'
    streamed = io.StringIO(newline="")
    CsvWriter(streamed).write(result(text))
    (row,) = read(streamed.getvalue())
    for column in ("path", "label", "error", "group", "truth"):
        assert row[column] == "'" + text, column
        assert raw(row[column]) == text  # and a program gets the value back
    assert row["probability"] == "0.250000" and (row["x"], row["y"]) == ("1", "2")
    assert row["context"] == "" and row["status"] == "error"  # (it has an error text)


def test_appended_rows_are_neutralised_too(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    target.write_text(",".join(COLUMNS) + "\n")
    append_rows(target, [result(lead + "cmd|' /C calc'!A0") for lead in LEADS])
    rows = read_file(target)
    assert [r["group"][:2] for r in rows] == ["'" + lead for lead in LEADS]


def test_a_scan_neutralises_names_and_folders(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file named like a formula (given as a relative path), and folders and patient ids
    beginning with each character, reach the path and group columns neutralised."""
    folder = tmp_path / "in"
    for lead in LEADS:
        (folder / f"{lead}lab").mkdir(parents=True)
        Image.new("RGB", (8, 8), (255, 255, 255)).save(folder / f"{lead}lab" / "a.png")
    Image.new("RGB", (8, 8)).save(folder / "=2+5_idx5_x1_y1_class0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / '=HYPERLINK("x","y").png')
    monkeypatch.chdir(tmp_path)
    args = ["scan", "in", '=HYPERLINK("x","y").png', "--model", str(tiny_model)]
    outcome = CliRunner().invoke(main, [*args, "--csv", "r.csv"])
    assert outcome.exit_code == 0, outcome.output
    rows = read_file(tmp_path / "r.csv")
    cells = [r[c] for r in rows for c in COLUMNS]
    assert not [c for c in cells if c.startswith(tuple(LEADS))]
    groups = sorted(r["group"] for r in rows)
    assert groups == sorted(["'=2+5", *(f"'{lead}lab" for lead in LEADS), tmp_path.name])
    assert rows[-1]["path"] == "'" + '=HYPERLINK("x","y").png'


def test_each_column_of_a_classified_and_of_a_failed_row() -> None:
    """An error row says nothing about review (neither yes nor no): it was never called."""
    from patchscan.report.csv_writer import row

    name = NameInfo("slide", 1, 2, "IDC")
    called = Result("/s/a.png", name, 0.25, "non-IDC", context=0.5, review=True)
    assert row(called) == (
        "/s/a.png", "ok", "0.250000", "0.500000", "non-IDC", "yes", "", "slide", "1", "2", "IDC"
    )  # fmt: skip
    failed = Result("/s/b.png", NameInfo("slide", None, None, None), error="truncated image")
    assert row(failed) == (
        "/s/b.png", "error", "", "", "", "", "truncated image", "slide", "", "", ""
    )  # fmt: skip
    assert len(row(failed)) == len(COLUMNS)


def test_rows_end_in_a_bare_line_feed() -> None:
    """csv.writer's default line end is CRLF; the CSV's rows end in "\\n" (a text-mode stdout
    on Windows makes that CRLF, once), and only a cell holding a CR is quoted."""
    streamed = io.StringIO(newline="")
    writer = CsvWriter(streamed)
    writer.write(Result("/s/a.png", NameInfo("s", None, None, None), 0.5, "IDC"))
    writer.write(Result("/s/b\r.png", NameInfo("s", None, None, None), error="x"))
    assert streamed.getvalue() == (
        ",".join(COLUMNS) + "\n"
        "/s/a.png,ok,0.500000,,IDC,no,,s,,,\n"
        '"/s/b\r.png","error","","","","","x","s","","",""\n'
    )
