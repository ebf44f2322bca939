"""The command line end to end on real sample patches with the tiny model (P = mean pixel value)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from patchscan import __version__, pipeline
from patchscan.cli import main


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def mean_pixel(path: Path) -> float:
    return float(
        np.asarray(Image.open(path).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)).mean()
        / 255
    )


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_scan_writes_csv_json_html_that_agree(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run(
        "scan",
        str(patches),
        "--model",
        str(tiny_model),
        "--csv",
        str(out / "r.csv"),
        "--json",
        str(out / "r.json"),
        "--report",
        str(out / "r.html"),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "r.csv")
    files = sorted(patches.rglob("*.png"))
    assert [Path(r["path"]) for r in rows] == files
    for row, path in zip(rows, files, strict=True):
        assert row["status"] == "ok" and row["error"] == ""
        assert float(row["probability"]) == pytest.approx(mean_pixel(path), abs=0.01)
        assert row["label"] == ("IDC" if float(row["probability"]) >= 0.5 else "non-IDC")
        assert row["group"] == "9035"
        assert row["truth"] == ("IDC" if path.parent.name == "1" else "non-IDC")
        assert f"_x{row['x']}_y{row['y']}_" in path.name
    report = json.loads((out / "r.json").read_text())
    labels = [r["label"] for r in rows]
    assert report["counts"] == {"non-IDC": labels.count("non-IDC"), "IDC": labels.count("IDC")}
    assert report["errors"] == 0 and report["files"] == len(rows)
    assert report["groups"][0]["group"] == "9035" and report["groups"][0]["files"] == len(rows)
    assert report["model"]["name"] == "tiny" and len(report["model"]["sha256"]) == 64
    assert report["metrics"]["n"] == len(rows)
    truth_pos = sum(r["truth"] == "IDC" for r in rows)
    assert sum(report["metrics"]["confusion_matrix"][1]) == truth_pos
    html = (out / "r.html").read_text()
    for text in (
        "Provenance",
        report["model"]["sha256"],
        "Slides",
        "Most suspicious",
        f"<b>{labels.count('IDC'):,}</b>",
        "data:image/png;base64,",
    ):
        assert text in html
    assert "http://" not in html and "https://" not in html  # self-contained, works offline


def test_bad_files_get_rows_and_good_files_are_still_classified(
    bad_inputs: tuple[Path, dict], tiny_model: Path, tmp_path: Path
) -> None:
    folder, expected = bad_inputs
    csv_path = tmp_path / "r.csv"
    result = CliRunner().invoke(
        main,
        [
            "scan",
            str(folder),
            "--model",
            str(tiny_model),
            "--csv",
            str(csv_path),
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 1
    rows = {Path(r["path"]).relative_to(folder).as_posix(): r for r in read_csv(csv_path)}
    assert set(rows) == set(expected)
    for name, error in expected.items():
        if error is None:
            assert rows[name]["status"] == "ok" and rows[name]["probability"], name
        else:
            assert rows[name]["status"] == "error" and error in rows[name]["error"], name
    assert "Traceback" not in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["skipped"] == {"not an image name": 1}
    assert report["errors"] == sum(e is not None for e in expected.values())


def test_csv_to_stdout_when_no_output_is_named(patches: Path, tiny_model: Path) -> None:
    result = run("scan", str(patches), "--model", str(tiny_model), "--quiet")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "path,status,probability,context,label,review,error,group,x,y,truth"
    assert len(lines) == 1 + len(list(patches.rglob("*.png")))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "no/such/folder"], "no such file or folder"),
        (["scan", ".", "--model", "nope"], "unknown model 'nope'"),
        (["scan", ".", "--model", "missing.onnx"], "model file not found"),
        (["scan", ".", "--report", "no/such/dir/r.html"], "does not exist"),
        (["scan", ".", "--threshold", "1.5"], "1.5"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_model_is_a_usage_error(tmp_path: Path, patches: Path) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not onnx")
    result = CliRunner().invoke(main, ["scan", str(patches), "--model", str(fake)])
    assert result.exit_code == 2 and "not a loadable ONNX model" in result.stderr


def test_ctrl_c_keeps_what_was_done(
    patches: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import patchscan.scan as scan_module

    real_classify = scan_module.classify

    def interrupted_after_five(*args, **kwargs):  # type: ignore[no-untyped-def]
        for index, result in enumerate(real_classify(*args, **kwargs)):
            if index == 5:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(scan_module, "classify", interrupted_after_five)
    result = CliRunner().invoke(
        main,
        [
            "scan",
            str(patches),
            "--model",
            str(tiny_model),
            "--csv",
            str(tmp_path / "r.csv"),
            "--json",
            str(tmp_path / "r.json"),
            "--batch-size",
            "4",
        ],
    )
    assert result.exit_code == 130
    assert len(read_csv(tmp_path / "r.csv")) == 5
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True and report["files"] == 5
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind

    monkeypatch.setattr(scan_module, "classify", real_classify)
    classified = []
    real_submit = pipeline.Workers.submit

    def counting(self, chunk, model, tiles):  # type: ignore[no-untyped-def]
        classified.append(len(chunk))
        return real_submit(self, chunk, model, tiles)

    monkeypatch.setattr(pipeline.Workers, "submit", counting)
    rerun = run("scan", str(patches), "--model", str(tiny_model), "--csv", str(tmp_path / "r.csv"))
    assert rerun.exit_code == 0 and len(read_csv(tmp_path / "r.csv")) == 20
    assert sum(classified) == 15  # the five done before Ctrl-C were remembered


def test_unwritable_output_is_one_line_not_a_traceback(patches: Path, tiny_model: Path) -> None:
    # /proc refuses new files even to root: a stand-in for a full disk or a read-only share.
    result = CliRunner().invoke(
        main, ["scan", str(patches), "--model", str(tiny_model), "--csv", "/proc/patchscan.csv"]
    )
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_report_is_refused_before_any_work(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """/proc takes no new file, even from root (tests run as root, where permissions say yes
    to everything): the scan must refuse at once, naming the report, and classify nothing."""
    csv_path = tmp_path / "r.csv"
    args = ["scan", str(patches), "--model", str(tiny_model), "--csv", str(csv_path)]
    result = CliRunner().invoke(main, [*args, "--report", "/proc/r.html"])
    assert result.exit_code == 2
    assert result.stderr.startswith("patchscan: error: cannot write /proc/r.html: ")
    assert len(result.stderr.splitlines()) == 1
    assert not csv_path.exists() and not list(tmp_path.glob("*.patchscan.*"))


def test_an_unwritable_csv_folder_names_the_csv_not_the_store(
    patches: Path, tiny_model: Path
) -> None:
    args = ["scan", str(patches), "--model", str(tiny_model), "--csv", "/proc/r.csv"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("patchscan: error: cannot write /proc/r.csv: ")
    assert ".patchscan.db" not in result.stderr


# ---- the CLI's ecosystem conventions ----------------------------------------------------------


def one_line_usage_error(result: Result, *fragments: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("patchscan: error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_watch_without_an_output_is_one_line_and_exit_2(tmp_path: Path) -> None:
    one_line_usage_error(run("watch", str(tmp_path)), "watch needs --csv, --json or --report")


def test_window_without_a_display_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    one_line_usage_error(run("window"), "cannot open the window", "display")


def test_model_names_are_case_insensitive(tmp_path: Path) -> None:
    result = run("scan", str(tmp_path), "--model", "IDC", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["model"]["name"] == "idc"


def test_workers_sets_the_worker_processes(
    patches: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    real_init = pipeline.Workers.__init__

    def counting(self: pipeline.Workers, workers: int) -> None:
        started.append(workers)
        real_init(self, workers)

    monkeypatch.setattr(pipeline.Workers, "__init__", counting)
    out = tmp_path / "r.json"
    result = run("scan", str(patches), "-m", str(tiny_model), "-j", "1", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert started == [1] and json.loads(out.read_text())["settings"]["workers"] == 1


def test_the_default_workers_are_the_cpus_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from patchscan.run import RunSettings, available_cpus

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert available_cpus() == 3 and RunSettings().worker_count() == 3
    assert RunSettings(workers=2).worker_count() == 2


def test_models_lists_a_table_on_a_terminal_lines_for_pipes_and_json_for_programs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    piped = run("models")
    assert piped.exit_code == 0
    lines = [line.split("\t") for line in piped.output.splitlines()]
    assert [cells[0] for cells in lines] == ["idc", "skin"] and {len(c) for c in lines} == {5}
    assert lines[0][1].startswith("IDC vs non-IDC") and lines[1][2].startswith("160x160")
    monkeypatch.setattr("patchscan.cli._stdout_is_terminal", lambda: True)
    table = run("models")
    assert table.exit_code == 0 and "\t" not in table.output
    assert table.output.split()[:5] == ["model", "classifies", "input", "threshold", "held-out"]
    assert "idc" in table.output and "skin" in table.output
    data = json.loads(run("models", "--json").output)
    assert set(data) == {"idc", "skin"}
    assert data["skin"]["classes"] == ["benign", "malignant"] and data["skin"]["views"] == 8


def test_help_texts_read_whole_and_say_what_each_command_does() -> None:
    scan_help = run("scan", "--help").output
    assert "Classify every image under PATHS (folders are searched recursively)." in scan_help
    watch_help = run("watch", "--help").output
    csv_help = watch_help[watch_help.index("--csv") : watch_help.index("--json")]
    assert "stdout" not in csv_help and "scan only" not in csv_help


def test_the_progress_bar_knows_its_total_and_advances(
    patches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal: the images are counted first, so the bar has a total to fill."""
    from patchscan import cli
    from patchscan.naming import NameInfo
    from patchscan.results import Result as Row

    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    bar = cli._progress(False, (patches,))
    with bar as on_result:
        for _ in range(5):
            on_result(Row("x.png", NameInfo("g", None, None, None), 0.5, "IDC"))
        on_result(Row("y.png", NameInfo("g", None, None, None), error="broken"))
        task = bar.progress.tasks[0]
        assert (task.total, task.completed, task.fields["errors"]) == (20, 6, 1)


def test_no_progress_bar_when_stderr_is_not_a_terminal(patches: Path) -> None:
    from patchscan import cli

    bar = cli._progress(False, (patches,))
    with bar:
        assert bar.progress is None
