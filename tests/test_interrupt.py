"""Ctrl-C during a scan: what was classified is written and remembered, the scan is not recorded
as complete, and the next run with the same outputs finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import patchscan.scan as scan_module
from conftest import SAMPLES, group_members, kill_group, read_csv
from patchscan.cli import main


def test_a_rerun_after_ctrl_c_with_the_same_outputs_finishes_the_scan(
    patches: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted scan must not record the fingerprint that lets the next run say
    "unchanged since the last scan" and keep the partial outputs."""
    real_classify = scan_module.classify

    def interrupted_after_five(*args, **kwargs):  # type: ignore[no-untyped-def]
        for index, result in enumerate(real_classify(*args, **kwargs)):
            if index == 5:
                raise KeyboardInterrupt
            yield result

    args = ["scan", str(patches), "--model", str(tiny_model)]
    args += ["--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json")]
    monkeypatch.setattr(scan_module, "classify", interrupted_after_five)
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 130
    assert len(read_csv(tmp_path / "r.csv")) == 5
    assert json.loads((tmp_path / "r.json").read_text())["interrupted"] is True

    monkeypatch.setattr(scan_module, "classify", real_classify)
    rerun = CliRunner().invoke(main, args)
    assert rerun.exit_code == 0
    assert "unchanged since the last scan" not in rerun.stderr
    assert len(read_csv(tmp_path / "r.csv")) == 20
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is False and report["files"] == 20

    third = CliRunner().invoke(main, args)  # now complete, so now unchanged
    assert third.exit_code == 0 and "unchanged since the last scan" in third.stderr


# Run in the main process and in each spawned worker (sitecustomize runs at every interpreter
# start): two workers whatever the machine, the first 128 images at full speed (more than the 8 KB
# the CSV writer buffers, so rows reach the file) and each one after them 20 ms slower, logged
# by the worker's pid, so the scan is still running when the signal comes. 256 images in chunks
# of 32 are all read ahead (4 chunks per worker): the walk is complete, as in a small folder.
SHIM = """
import os, time
import patchscan.imaging

os.cpu_count = lambda: 2
_load_rgb = patchscan.imaging.load_rgb

def _slow_after_128(path, *args, **kwargs):
    if int(os.path.basename(path)[1:5]) >= 128:
        with open(os.environ["SLOW_IMAGES_LOG"], "a") as log:
            print(os.getpid(), file=log)
        time.sleep(0.02)
    return _load_rgb(path, *args, **kwargs)

patchscan.imaging.load_rgb = _slow_after_128
"""


def test_sigint_to_a_scan_with_workers_running_exits_130_and_keeps_its_outputs(
    tiny_model: Path, tmp_path: Path
) -> None:
    folder, out, shim = tmp_path / "in", tmp_path / "out", tmp_path / "shim"
    for path in (folder, out, shim):
        path.mkdir()
    sources = sorted(SAMPLES.glob("*/*/*.png"))
    count = 256
    for index in range(count):
        os.link(sources[index % len(sources)], folder / f"p{index:04d}_x{index}_y0.png")
    (shim / "sitecustomize.py").write_text(SHIM)
    command = [sys.executable, "-m", "patchscan", "scan", str(folder), "--model", str(tiny_model)]
    command += ["--csv", str(out / "r.csv"), "--json", str(out / "r.json"), "--batch-size", "32"]
    path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    log = tmp_path / "slow_images.log"
    process = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": path, "SLOW_IMAGES_LOG": str(log)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job would be
    )
    group = process.pid
    try:
        deadline = time.monotonic() + 30
        while not (
            any(p.stat().st_size for p in out.glob(".r.csv.*.tmp"))  # rows written
            and log.exists()
            and len(set(log.read_text().split())) == 2  # both workers at work, so both started
        ):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no rows written"
            time.sleep(0.01)
        os.killpg(group, signal.SIGINT)  # Ctrl-C in a terminal: to the whole group
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "interrupted" in stderr
        deadline = time.monotonic() + 10
        while group_members(group):  # no worker outlives the scan
            assert time.monotonic() < deadline, "a worker process survived the scan"
            time.sleep(0.05)
    finally:
        kill_group(group)
        process.wait()
    rows = read_csv(out / "r.csv")
    assert 1 <= len(rows) < count
    assert all(row["status"] == "ok" for row in rows)
    report = json.loads((out / "r.json").read_text())
    assert report["interrupted"] is True and report["files"] == len(rows)
    assert not list(out.glob(".*.tmp"))

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "unchanged since the last scan" not in rerun.stderr
    assert len(read_csv(out / "r.csv")) == count
    assert json.loads((out / "r.json").read_text())["interrupted"] is False
