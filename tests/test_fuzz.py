"""Fuzzing the scan: random bytes, real PNG and JPEG samples with bytes flipped, cut off or
inserted, under random file names. Every image gets exactly one row, the scan never ends in a
traceback (exit 0 or 1), and the good files beside the broken ones keep their exact rows.

30 examples, each a scan of up to 6 fuzzed files beside 2 good ones; one worker process serves
them all (starting one per scan would cost a second each), so this takes a few seconds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, SAMPLES
from patchscan import pipeline, scan, store
from patchscan.cli import main
from patchscan.discover import is_image_name

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TINY = Path(__file__).parent / "data" / "tiny.onnx"
GOOD = sorted(SAMPLES.glob("*/*/*.png"))[:2]
SOURCES = [
    p.read_bytes() for p in [*GOOD, *sorted((ROOT / "assets/samples/skin").glob("*/*.jpg"))[:2]]
]

_flip = st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255))
_cut = st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(0))
_insert = st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64))
# Half the edits land in the first 64 bytes: the signature, IHDR, the JPEG markers.
_early = st.tuples(st.just("flip"), st.integers(0, 63), st.integers(1, 255))


def corrupt(source: int, edits: list[tuple[str, int, object]]) -> bytes:
    data = bytearray(SOURCES[source])
    for kind, at, value in edits:
        at %= max(1, len(data))
        if kind == "flip" and data:
            data[at] ^= value  # type: ignore[operator]
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = value  # type: ignore[assignment]
    return bytes(data)


contents = st.one_of(
    st.builds(
        corrupt,
        st.integers(0, len(SOURCES) - 1),
        st.lists(st.one_of(_flip, _early, _cut, _insert), min_size=1, max_size=4),
    ),
    st.binary(max_size=3000),
)
stems = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=40,
)
suffixes = st.sampled_from([".png", ".PNG", ".jpg", ".jpeg", ".tif", ".bmp", ".txt"])
fuzzed_files = st.lists(
    st.tuples(st.tuples(stems, suffixes).map("".join), contents),
    min_size=1,
    max_size=6,
    unique_by=lambda item: item[0],
)


class _OnePool(pipeline.Workers):
    """The same worker process for every scan of the module; closed only at its end."""

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture(scope="module")
def one_pool() -> Iterator[None]:
    pool = _OnePool(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scan, "Workers", lambda count: pool)
        yield
    pool.close()


@pytest.fixture(scope="module")
def good_rows(one_pool: None) -> dict[str, dict[str, str]]:
    """The good files' rows from a scan of them alone."""
    with tempfile.TemporaryDirectory() as folder:
        rows = scan_rows(Path(folder), [])[1]
        return {Path(r["path"]).name: r for r in rows}


def scan_rows(folder: Path, files: list[tuple[str, bytes]]) -> tuple[int, list[dict[str, str]]]:
    (folder / "in").mkdir()
    for source in GOOD:
        shutil.copy(source, folder / "in" / f"good-{source.name}")
    for name, data in files:
        (folder / "in" / name).write_bytes(data)
    out = folder / "r.csv"
    args = ["scan", str(folder / "in"), "--model", str(TINY), "--csv", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    with open(out, newline="", encoding="utf-8") as handle:
        return result.exit_code, list(csv.DictReader(handle))


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 30)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=fuzzed_files)
def test_fuzzed_files_each_get_one_row_and_spoil_nothing(
    files: list[tuple[str, bytes]], good_rows: dict[str, dict[str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        code, rows = scan_rows(Path(folder), files)
    assert code in (0, 1)
    names = [Path(r["path"]).name for r in rows]
    expected = [name for name, _ in files if is_image_name(name)] + list(good_rows)
    assert sorted(names) == sorted(expected)  # each image exactly once, nothing else
    for row in rows:
        name = Path(row["path"]).name
        if name in good_rows:
            assert row == {**good_rows[name], "path": row["path"]}
        elif row["status"] == "ok":
            assert 0.0 <= float(row["probability"]) <= 1.0 and row["error"] == ""
        else:
            assert row["status"] == "error" and row["error"] and row["probability"] == ""
    assert code == (1 if any(r["status"] == "error" for r in rows) else 0)


def test_a_file_name_that_is_not_utf8_gets_a_row(tmp_path: Path, one_pool: None) -> None:
    """Found by fuzzing: Latin-1 bytes in a name (an old share) ended the scan with
    UnicodeEncodeError. The file is classified; the CSV, JSON and HTML show its name with the
    byte escaped; the result store keeps it, so a rescan neither redoes nor loses it."""
    (tmp_path / "in").mkdir()
    shutil.copy(GOOD[0], os.fsencode(tmp_path / "in") + b"/caf\xe9.png")
    shutil.copy(GOOD[1], tmp_path / "in" / "plain.png")
    out = {kind: tmp_path / f"r.{kind}" for kind in ("csv", "json", "html")}
    args = ["scan", str(tmp_path / "in"), "--model", str(TINY), "--quiet"]
    args += [f"--{'report' if kind == 'html' else kind}={path}" for kind, path in out.items()]
    for attempt in ("first", "rescan", "forced"):
        if attempt == "rescan":
            out["csv"].unlink()  # not the unchanged-folder path: the rows come from the store
        result = CliRunner().invoke(main, args + (["--force"] if attempt == "forced" else []))
        assert result.exit_code == 0, (attempt, result.output, result.exception)
        text = out["csv"].read_text(encoding="utf-8")  # still valid UTF-8
        rows = list(csv.DictReader(io.StringIO(text)))
        assert sorted(Path(r["path"]).name for r in rows) == ["caf\\udce9.png", "plain.png"]
        assert all(r["status"] == "ok" for r in rows)
    summary = json.loads(out["json"].read_text(encoding="utf-8"))
    assert sum(summary["counts"].values()) == 2 and summary["errors"] == 0
    out["html"].read_text(encoding="utf-8")
    with contextlib.closing(sqlite3.connect(tmp_path / "r.patchscan.db")) as db:
        keys = [row[0] for row in db.execute("SELECT path FROM results")]
    name = os.fsdecode(os.fsencode(tmp_path / "in") + b"/caf\xe9.png")
    assert name in {store._path(key) for key in keys}  # the exact name comes back
