"""Outputs are written to a temp file and renamed into place: a failed write leaves the old file
as it was, a reader never sees half a file, and the final file has the mode open() would give."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, read_csv
from patchscan.atomic import atomic_open, write_text_atomic
from patchscan.cli import main
from patchscan.scan import ScanSettings, run_scan


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("failure", [RuntimeError, OSError, KeyboardInterrupt])
def test_a_failed_write_leaves_the_old_file_untouched(
    tmp_path: Path, failure: type[BaseException]
) -> None:
    """A bug, a full disk or Ctrl-C halfway: the old file stays, the temp file goes."""
    target = tmp_path / "r.csv"
    target.write_text("old,complete\n")
    with pytest.raises(failure), atomic_open(target) as handle:
        handle.write("new,half")
        handle.flush()
        raise failure()
    assert target.read_text() == "old,complete\n"
    assert leftovers(tmp_path) == []  # and the temp file is gone


def test_a_reader_sees_the_old_file_until_the_new_one_is_whole(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    old_inode = target.stat().st_ino
    with atomic_open(target) as handle:
        handle.write("new, first half")
        handle.flush()
        assert target.read_text() == "old"
        handle.write(" and second half")
        assert target.read_text() == "old"
        assert len(leftovers(tmp_path)) == 1  # written beside it, on the same file system
    assert target.read_text() == "new, first half and second half"
    assert target.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert leftovers(tmp_path) == []


def test_the_data_is_synced_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the rename must not leave an empty file where the old one was."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[1])
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(f"replace {Path(src).name} {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text_atomic(tmp_path / "r.html", "<html></html>")
    assert len(events) == 2 and events[0].startswith("fsync .r.html.")
    assert events[1] == f"replace {events[0].split()[1]} r.html"
    assert (tmp_path / "r.html").read_text() == "<html></html>"


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_final_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    """Not mkstemp's 0600: a report on a shared drive must stay readable by the group."""
    code = (
        "import sys; from pathlib import Path; from patchscan.atomic import write_text_atomic\n"
        "write_text_atomic(Path(sys.argv[1]), 'x')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tool"), str(ROOT / "tests")])}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "r.json")],
        check=True,
        env=env,
        preexec_fn=lambda: os.umask(umask),  # the child starts with this umask
    )
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_final_file_in_this_process_has_the_umasks_mode(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    write_text_atomic(tmp_path / "r.json", "x")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_scan_leaves_the_old_csv_in_place_until_it_ends(
    patches: Path, tiny_model: Path, tmp_path: Path
) -> None:
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("path\nfrom the last scan\n")
    seen: list[str] = []
    settings = ScanSettings((patches,), model=str(tiny_model), csv=csv_path, batch_size=4)
    run_scan(settings, "test", on_result=lambda result: seen.append(csv_path.read_text()))
    assert seen == ["path\nfrom the last scan\n"] * 20
    assert len(read_csv(csv_path)) == 20


def test_a_scan_that_cannot_write_its_json_keeps_the_old_one(
    patches: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    json_path = tmp_path / "r.json"
    json_path.write_text('{"from": "the last scan"}\n')
    real_fsync = os.fsync

    def full_disk_for_json(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".r.json."):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_for_json)
    args = ["scan", str(patches), "--model", str(tiny_model), "--csv", str(tmp_path / "r.csv")]
    result = CliRunner().invoke(main, [*args, "--json", str(json_path), "--quiet"])
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "No space left on device" in result.stderr
    assert json_path.read_text() == '{"from": "the last scan"}\n'
    assert leftovers(tmp_path) == []


def test_reading_the_umask_leaves_it_as_it_was() -> None:
    """os.umask can only be read by setting it: _umask must put the old one back."""
    from patchscan.atomic import _umask

    old = os.umask(0o027)
    try:
        assert _umask() == 0o027
        assert os.umask(0o027) == 0o027  # still the one set, not 0
    finally:
        os.umask(old)


def test_stale_temps_of_the_given_outputs_go_and_nothing_else(tmp_path: Path) -> None:
    """remove_stale_temps itself (test_one_writer has a killed run's through a scan): outputs in
    two folders, a missing folder, and names that only look like a temp file of theirs."""
    from patchscan.atomic import remove_stale_temps

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    stale = [
        one / ".r.csv.k1ll_9ed.tmp",
        one / ".r.json.abcdefgh.tmp",
        two / ".r.html.a1b2c3d4.tmp",
    ]
    others = [
        one / ".r.html.a1b2c3d4.tmp",  # r.html is in two/, not here
        one / ".r.csv.bak.abcdefgh.tmp",
        one / ".rxcsv.abcdefgh.tmp",  # the dot is a dot, not any character
        one / "abcdefgh.tmp",
        two / ".r.csv.abcdefgh.tmp",
        two / ".r.html.a1b2c3d4.tmpx",
    ]
    for path in stale + others:
        path.write_text("left by kill -9")
    outputs = (one / "r.csv", one / "r.json", two / "r.html", tmp_path / "gone" / "r.csv")
    remove_stale_temps(outputs)
    assert [p for p in stale if p.exists()] == []
    assert [p for p in others if not p.exists()] == []


def test_a_stale_temp_removed_by_someone_else_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patchscan import atomic

    (tmp_path / ".r.csv.abcdefgh.tmp").write_text("left by kill -9")

    def already_gone(path: str) -> None:
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(atomic.os, "unlink", already_gone)
    atomic.remove_stale_temps((tmp_path / "r.csv",))  # no exception


def test_outputs_are_utf8_in_a_plain_c_locale_too(tmp_path: Path) -> None:
    """In a plain C locale (ASCII, as in a bare container or a cron job; Windows' is cp1252)
    a report's "é" is still written as UTF-8, not refused or written in the locale's code.
    In this process (a subprocess's call would be invisible to `make mutate`'s test mapping),
    so the locale is switched here; open()'s default encoding follows it."""
    import locale

    target = tmp_path / "r.json"
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        write_text_atomic(target, "lame-\u00e9\n")
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
    assert target.read_bytes() == "lame-é\n".encode()
