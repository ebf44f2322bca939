"""Incremental scans: the result store beside the outputs, keyed on path, size, mtime and model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import with_metadata
from patchscan import model, pipeline
from patchscan.cli import main
from patchscan.discover import Candidate
from patchscan.model import ModelInfo
from patchscan.naming import parse_name
from patchscan.results import TILE, Labels, Result, ReviewBand
from patchscan.store import SUFFIX, ResultStore, store_files


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
    assert "(unknown schema version 3)" in result.output


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


# The store as a value: what `watch` and the unchanged-folder path read from it directly.

LABELS = Labels(("non-IDC", "IDC"), threshold=0.5, review=ReviewBand(0.4, 0.6))


def stored(tmp_path: Path, sha: str = "a" * 64) -> ResultStore:
    return ResultStore(tmp_path / f"r{SUFFIX}", sha)


def patch_result(path: Path, probability: float | None, **fields: Any) -> Result:
    name = parse_name(str(path), LABELS.classes)
    if probability is None:
        return Result(str(path), name, error=fields.pop("error", "broken"), **fields)
    return Result(str(path), name, probability, LABELS.of_probability(probability), **fields)


def test_a_store_keeps_a_readers_journal_and_a_crash_safe_sync(tmp_path: Path) -> None:
    store = stored(tmp_path)
    assert store.path == tmp_path / f"r{SUFFIX}"
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()


def test_a_store_opened_on_one_thread_is_used_from_another(tmp_path: Path) -> None:
    """The window and watch commit from their worker threads."""
    store = stored(tmp_path)
    file = tmp_path / "s_idx5_x0_y0_class1.png"
    failures: list[BaseException] = []

    def use() -> None:
        try:
            store.add(patch_result(file, 0.9, stamp=(3, 4)))
            store.commit()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    assert failures == [] and store.stamp(str(file)) == (3, 4)
    store.close()


def test_the_companion_files_of_a_store_are_its_journals(tmp_path: Path) -> None:
    path = tmp_path / f"r{SUFFIX}"
    names = {p.name for p in store_files(path)}
    assert names == {f"r{SUFFIX}{extra}" for extra in ("", "-journal", "-wal", "-shm")}


def test_model_info_is_kept_per_model(tmp_path: Path) -> None:
    info = ModelInfo("t", "1", "", ("non-IDC", "IDC"), (8, 8), threshold=0.25)
    store = stored(tmp_path)
    assert store.model_info() is None
    store.remember_model(info)
    assert store.model_info() == info
    store.close()
    with closing(stored(tmp_path)) as again, closing(stored(tmp_path, "b" * 64)) as other:
        assert again.model_info() == info  # committed, not just cached
        assert other.model_info() is None


def test_a_stamp_is_the_current_models_and_none_for_others(tmp_path: Path) -> None:
    file = tmp_path / "s_idx5_x0_y0_class1.png"
    store = stored(tmp_path)
    assert store.stamp(str(file)) is None
    store.add(patch_result(file, 0.7, stamp=(10, 20)))
    store.add(patch_result(tmp_path / "unstatable.png", 0.7))  # no stamp: nothing to key on
    store.commit()
    assert store.stamp(str(file)) == (10, 20)
    assert store.stamp(os.path.relpath(file)) == (10, 20)  # keyed by the absolute path
    assert store.stamp(str(tmp_path / "unstatable.png")) is None
    with closing(stored(tmp_path, "b" * 64)) as other:
        assert other.stamp(str(file)) is None and not other.has_results()
    assert store.has_results()
    store.close()


def test_a_known_result_is_labelled_now_and_carries_its_stamp(tmp_path: Path) -> None:
    file = tmp_path / "s_idx5_x0_y0_class1.png"
    store = stored(tmp_path)
    store.add(patch_result(file, 0.55, stamp=(10, 20), colour=(1.0, 2.0)))
    store.commit()
    found = store.known(Candidate(str(file), stamp=(10, 20)), LABELS, tiles=False)
    assert found is not None
    assert (found.path, found.probability, found.stamp, found.known) == (
        str(file),
        0.55,
        (10, 20),
        True,
    )
    assert (found.label, found.review, found.colour) == ("IDC", True, (1.0, 2.0))
    stricter = Labels(LABELS.classes, threshold=0.6)
    assert store.known(Candidate(str(file), stamp=(10, 20)), stricter, False).label == "non-IDC"  # type: ignore[union-attr]
    assert store.known(Candidate(str(file), stamp=(10, 21)), LABELS, tiles=False) is None
    assert store.known(Candidate(str(file), stamp=None), LABELS, tiles=False) is None
    store.close()


def test_the_current_results_are_those_under_a_folder_in_path_order(tmp_path: Path) -> None:
    """What watch rebuilds its outputs from: this model's rows for files in the folder or below
    it (not in a sibling whose name merely starts the same), each as the scan made it."""
    inside, deeper = (
        tmp_path / "slide" / "b_idx5_x0_y0_class0.png",
        tmp_path / "slide" / "d" / "a.png",
    )
    sibling = tmp_path / "slide2" / "a.png"
    tile = np.arange(TILE * TILE * 3, dtype=np.uint8).reshape(TILE, TILE, 3)
    store = stored(tmp_path)
    store.add(patch_result(inside, 0.3, stamp=(1, 2), tile=tile, colour=(5.0,)))
    store.add(patch_result(deeper, None, error="", stamp=(3, 4)))
    store.add(patch_result(sibling, 0.9, stamp=(5, 6)))
    store.commit()
    with closing(stored(tmp_path, "b" * 64)) as other:  # a file another model classified
        other.add(patch_result(tmp_path / "slide" / "c.png", 0.99, stamp=(1, 2)))
    rows = list(store.current(LABELS, tmp_path / "slide"))
    assert [r.path for r in rows] == [str(inside), str(deeper)]
    first, second = rows
    assert (first.probability, first.label, first.review, first.stamp) == (
        0.3,
        "non-IDC",
        False,
        (1, 2),
    )
    assert first.known and first.colour == (5.0,) and np.array_equal(first.tile, tile)
    assert (second.error, second.stamp, second.known, second.probability) == (
        "unknown error",
        (3, 4),
        True,
        None,
    )
    assert [r.path for r in store.current(LABELS, inside)] == [str(inside)]  # a file itself
    assert len(list(store.current(LABELS, Path("/")))) == 3  # everything under the root
    capital = tmp_path / "Slide-X" / "a.png"  # a name ending in X, the separators' neighbour
    store.add(patch_result(capital, 0.5, stamp=(7, 8)))
    store.commit()
    assert [r.path for r in store.current(LABELS, capital.parent)] == [str(capital)]
    store.close()


def test_a_scan_is_remembered_only_while_its_outputs_stay_as_written(tmp_path: Path) -> None:
    csv, report = tmp_path / "r.csv", tmp_path / "r.html"
    csv.write_text("a\n")
    report.write_text("b\n")
    store = stored(tmp_path)
    assert store.last_scan((csv, report)) is None
    store.remember_scan("fingerprint", (csv, report), {"IDC": 3})
    store.close()
    store = stored(tmp_path)
    assert store.last_scan((csv, report)) == ("fingerprint", {"IDC": 3})
    assert store.last_scan((csv,)) is None  # other outputs asked for
    report.write_text("changed\n")
    assert store.last_scan((csv, report)) is None
    store.close()
