"""Incremental scans: the result store beside the outputs, keyed on path, size, mtime and model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import with_metadata
from patchscan import model, pipeline
from patchscan.cli import main
from patchscan.store import SUFFIX


def scan(folder: Path, model_path: Path, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(
        main,
        [
            *("scan", str(folder), "--model", str(model_path)),
            *("--csv", str(out / "r.csv"), "--json", str(out / "r.json"), "--quiet", *extra),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return (out / "r.csv").read_text()


def test_unchanged_rescan_classifies_nothing_and_writes_the_same_csv(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    first = scan(patches, tiny_model, tmp_path)
    assert sum(predicted) == 20
    assert (tmp_path / f"r{SUFFIX}").is_file()
    predicted.clear()
    second = scan(patches, tiny_model, tmp_path)
    assert predicted == [] and second == first
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"] == 20 and report["skipped"] == {}


def test_batches_are_sized_by_the_models_input_unless_given(
    patches: Path,
    tiny_model: Path,
    tmp_path: Path,
    predicted: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "PIXELS_PER_BATCH", 8 * 8 * 8)  # 8 images of the tiny 8x8
    scan(patches, tiny_model, tmp_path)
    assert predicted == [8, 8, 4]
    predicted.clear()
    scan(patches, tiny_model, tmp_path, "--force", "--batch-size", "7")
    assert predicted == [7, 7, 6]


def test_a_fully_known_rescan_never_starts_onnxruntime_or_workers(
    patches: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = scan(patches, tiny_model, tmp_path)
    (tmp_path / "r.json").unlink()  # outputs to write again: the full known path, not the fast one

    def refuse(*args: object) -> None:
        raise AssertionError("the model or a worker was started")

    monkeypatch.setattr(model.Session, "__init__", refuse)
    monkeypatch.setattr(pipeline.Workers, "submit", refuse)
    assert scan(patches, tiny_model, tmp_path) == first


def test_changed_files_and_new_files_are_redone_and_only_they(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    scan(patches, tiny_model, tmp_path)
    changed = sorted(patches.rglob("*.png"))[3]
    Image.new("RGB", (50, 50), (255, 255, 255)).save(changed)  # white: P = 1.0 under tiny
    shutil.copy(changed, changed.with_name("new_idx5_x0_y0_class0.png"))
    predicted.clear()
    csv_text = scan(patches, tiny_model, tmp_path)
    assert sum(predicted) == 2
    row = next(line for line in csv_text.splitlines() if line.startswith(str(changed)))
    assert ",ok,1.000000," in row
    assert len(csv_text.splitlines()) == 1 + 21


def test_same_size_and_content_but_new_mtime_is_redone(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    scan(patches, tiny_model, tmp_path)
    touched = sorted(patches.rglob("*.png"))[0]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    predicted.clear()
    scan(patches, tiny_model, tmp_path)
    assert sum(predicted) == 1


def test_another_model_or_force_redoes_everything(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    scan(patches, tiny_model, tmp_path)
    other = tmp_path / "other.onnx"
    other.write_bytes(tiny_model.read_bytes() + b"")  # same bytes, same sha: still known
    predicted.clear()
    scan(patches, other, tmp_path)
    assert predicted == []

    # Different bytes, different sha256 (made without the train extra's onnx package).
    with_metadata(tiny_model, other, description="the same graph, other metadata")
    scan(patches, other, tmp_path)
    assert sum(predicted) == 20

    predicted.clear()
    scan(patches, other, tmp_path, "--force")
    assert sum(predicted) == 20


def test_errors_are_remembered_too(tiny_model: Path, tmp_path: Path, predicted: list[int]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (50, 50)).save(folder / "good.png")
    out = tmp_path / "out"
    out.mkdir()
    written = []
    for _ in range(2):
        result = CliRunner().invoke(
            main, ["scan", str(folder), "--model", str(tiny_model), "--csv", str(out / "r.csv")]
        )
        assert result.exit_code == 1
        written.append((out / "r.csv").read_text())
        (out / "r.csv").unlink()  # written again from the store, not through the fast path
    assert sum(predicted) == 2  # each file went to a worker once: the error was remembered
    assert "broken.png" in written[0] and written[1] == written[0]  # with the same reason


def test_a_store_from_before_colour_sampling_is_upgraded_in_place(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """A version-1 store (no colour column) opens, gains the column and keeps its results."""
    import sqlite3

    scan(patches, tiny_model, tmp_path)
    db = tmp_path / f"r{SUFFIX}"
    with sqlite3.connect(db) as old:
        old.execute("ALTER TABLE results DROP COLUMN colour")
        old.execute("PRAGMA user_version=1")
    (tmp_path / "r.csv").unlink()
    first = scan(patches, tiny_model, tmp_path)
    with sqlite3.connect(db) as upgraded:
        assert upgraded.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [row[1] for row in upgraded.execute("PRAGMA table_info(results)")]
    assert "colour" in columns and first.count("\n") == 21
    with sqlite3.connect(db) as newer:
        newer.execute("PRAGMA user_version=3")
    result = CliRunner().invoke(
        main, ["scan", str(patches), "--model", str(tiny_model), "--csv", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2 and "not a patchscan result store" in result.output


def test_store_inside_the_scanned_folder_is_not_an_input(
    patches: Path, tiny_model: Path, predicted: list[int]
) -> None:
    scan(patches, tiny_model, patches)
    scan(patches, tiny_model, patches)
    report = json.loads((patches / "r.json").read_text())
    assert report["files"] == 20 and report["skipped"] == {}


def test_a_corrupt_store_is_one_line_usage_error(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    (tmp_path / f"r{SUFFIX}").write_bytes(b"garbage" * 1000)
    result = CliRunner().invoke(
        main, ["scan", str(patches), "--model", str(tiny_model), "--csv", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2
    assert "not a patchscan result store" in result.stderr and "Traceback" not in result.stderr


def stamps(*paths: Path) -> list[tuple[int, int]]:
    return [(p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def test_nothing_changed_leaves_the_outputs_alone_and_says_so(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    scan(patches, tiny_model, tmp_path)
    outputs = (tmp_path / "r.csv", tmp_path / "r.json")
    before = stamps(*outputs)
    predicted.clear()
    args = ["scan", str(patches), "--model", str(tiny_model)]
    args += ["--csv", str(outputs[0]), "--json", str(outputs[1])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and predicted == []
    assert stamps(*outputs) == before
    assert "20 files:" in result.stderr
    assert f"unchanged since the last scan: {outputs[0]}" in result.stderr


def test_a_csv_scan_loads_nothing_heavy_in_the_main_process(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """The whole command, in a fresh interpreter as a user runs it: start-up counts. The
    workers decode and classify; the main process keeps the books and the CSV without numpy,
    PIL or onnxruntime (each an import the workers would wait on), and so does a rescan."""
    args = ["scan", str(patches), "--model", str(tiny_model), "--csv", str(tmp_path / "r.csv")]
    probe = (
        "import sys; from patchscan.cli import main\n"
        "try: main(sys.argv[1:])\n"
        "except SystemExit as end: assert end.code == 0, end.code\n"
        "print(sorted({'numpy', 'PIL', 'onnxruntime', 'rich'} & set(sys.modules)))"
    )
    run = [sys.executable, "-c", probe, *args, "--quiet"]
    first = subprocess.run(run, capture_output=True, text=True, check=True)
    assert first.stdout.split("\n")[-2] == "[]"
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 21  # it did classify
    second = subprocess.run(run, capture_output=True, text=True, check=True)
    assert second.stdout.split("\n")[-2] == "[]"


@pytest.mark.parametrize(
    "change", ["output deleted", "output edited", "new non-image", "threshold"]
)
def test_any_change_writes_the_outputs_again_without_reclassifying(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int], change: str
) -> None:
    first = scan(patches, tiny_model, tmp_path)
    csv_path, json_path = tmp_path / "r.csv", tmp_path / "r.json"
    extra: tuple[str, ...] = ()
    if change == "output deleted":
        json_path.unlink()
    elif change == "output edited":
        csv_path.write_text("edited by hand\n")
    elif change == "new non-image":
        (patches / "notes.txt").write_text("a new file the summary counts as skipped")
    else:
        extra = ("--threshold", "0.3")
    before = stamps(csv_path)
    predicted.clear()
    again = scan(patches, tiny_model, tmp_path, *extra)
    assert predicted == []  # every image is still known
    assert json_path.is_file() and stamps(csv_path) != before
    if change != "threshold":
        assert again == first
    skipped = json.loads(json_path.read_text())["skipped"]
    assert skipped == ({"not an image name": 1} if change == "new non-image" else {})


def test_a_report_after_a_csv_only_scan_reads_the_patches_again_for_the_slide_view(
    patches: Path, tiny_model: Path, tmp_path: Path, predicted: list[int]
) -> None:
    """A CSV-only scan stores no thumbnails; a later scan with --report needs them to draw the
    slide, so it reads those patches again instead of taking them from the store."""
    args = ["scan", str(patches), "--model", str(tiny_model), "--csv", str(tmp_path / "r.csv")]
    assert CliRunner().invoke(main, [*args, "--quiet"]).exit_code == 0
    predicted.clear()
    result = CliRunner().invoke(main, [*args, "--report", str(tmp_path / "r.html"), "--quiet"])
    assert result.exit_code == 0
    assert sum(predicted) == 20
    assert "<b>9035</b> · 20 patches" in (tmp_path / "r.html").read_text()
    predicted.clear()  # now stored with their thumbnails
    (tmp_path / "r.html").unlink()
    assert CliRunner().invoke(main, [*args, "--report", str(tmp_path / "r.html")]).exit_code == 0
    assert predicted == [] and "<b>9035</b> · 20 patches" in (tmp_path / "r.html").read_text()
