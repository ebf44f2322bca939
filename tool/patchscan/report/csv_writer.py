"""The CSV: one row per image, streamed as results arrive, renamed into place when the scan ends.

Lab staff open it in Excel, where a cell that begins with = + - @ (or a tab or CR before them)
is run as a formula: a file named `=HYPERLINK(...).png`, or a patient folder `+1`, would put a
live formula into the path or group column (OWASP "CSV Injection"). Every cell is neutralised in
`row()`, the one place rows are made, for the streamed CSV and the appended rows alike.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from patchscan.atomic import TEXT_ENCODING, atomic_open
from patchscan.results import Result

# OWASP's list, and ' itself: so that the ' added is always undone by dropping a leading ' (a
# value that began with ' has one added too), which is how programs read raw values back.
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "'")

COLUMNS = (
    "path",
    "status",
    "probability",
    "context",
    "label",
    "review",
    "error",
    "group",
    "x",
    "y",
    "truth",
)


def row(result: Result) -> tuple[str, ...]:
    """The values in COLUMNS order (a plain csv.writer row: a third of DictWriter's cost), each
    neutralised for spreadsheets."""
    name = result.name
    cells = (
        result.path,
        "ok" if result.ok else "error",
        "" if result.probability is None else f"{result.probability:.6f}",
        "" if result.context is None else f"{result.context:.6f}",
        result.label,
        ("yes" if result.review else "no") if result.ok else "",
        result.error,
        name.group,
        "" if name.x is None else str(name.x),
        "" if name.y is None else str(name.y),
        name.truth or "",
    )
    # A ' before a cell a spreadsheet would read as a formula (a list, not a generator: 0.6 us a
    # row less). Numbers never get one: probability and context are in [0, 1], x and y digits.
    return tuple(["'" + cell if cell.startswith(_FORMULA_LEADS) else cell for cell in cells])


class _Rows:
    """csv.writer rows ending in "\n" (text-mode stdout on Windows makes that "\r\n"), with a
    cell holding a CR quoted too: csv quotes only the line end's characters, and a bare CR would
    end the row early for Excel and for csv readers alike."""

    def __init__(self, handle: IO[str]) -> None:
        self._plain = csv.writer(handle, lineterminator="\n")
        self._quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def write(self, cells: tuple[str, ...]) -> None:
        (self._quoted if "\r" in "".join(cells) else self._plain).writerow(cells)


class CsvWriter:
    def __init__(self, handle: IO[str]) -> None:
        self._rows = _Rows(handle)
        self._rows.write(COLUMNS)

    def write(self, result: Result) -> None:
        self._rows.write(row(result))


@contextlib.contextmanager
def open_csv(path: Path | None) -> Iterator[CsvWriter]:
    """`path` None means stdout (for pipes); otherwise a temp file renamed over `path` at the end."""
    if path is None:
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors=TEXT_ENCODING["errors"])
        yield CsvWriter(sys.stdout)
        sys.stdout.flush()
        return
    with atomic_open(path, "w", newline="", **TEXT_ENCODING) as handle:
        yield CsvWriter(handle)


def append_rows(path: Path, results: Iterable[Result]) -> None:
    """Append rows to an existing CSV in one write(), so a crash never leaves half a row."""
    buffer = io.StringIO()
    rows = _Rows(buffer)
    for result in results:
        rows.write(row(result))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, buffer.getvalue().encode(**TEXT_ENCODING))
    finally:
        os.close(fd)
