import os
from pathlib import Path

import pytest

from patchscan.discover import discover, is_image_name, stamp_of


def test_recursive_sorted_hidden_skipped_no_loops(tmp_path: Path) -> None:
    for name in (
        "b/2.png",
        "b/1.JPG",
        "a/z.tiff",
        "a/.hidden/q.png",
        "c.bmp",
        "notes.txt",
        ".x.png",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "b" / "up")  # would loop forever if followed naively
    found = list(discover([tmp_path]))
    images = [Path(c.path).relative_to(tmp_path).as_posix() for c in found if not c.skip]
    assert images == ["a/z.tiff", "b/1.JPG", "b/2.png", "c.bmp"]
    assert [Path(c.path).name for c in found if c.skip] == ["notes.txt"]


def test_folder_named_like_an_image_is_walked(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    (tmp_path / "x.png" / "in.png").write_bytes(b"x")
    assert [Path(c.path).name for c in discover([tmp_path])] == ["in.png"]


def test_outputs_are_excluded(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "report.png").write_bytes(b"x")
    found = discover([tmp_path], exclude=frozenset({(tmp_path / "report.png").resolve()}))
    assert [Path(c.path).name for c in found] == ["a.png"]


def test_file_arguments_are_taken_as_given(tmp_path: Path) -> None:
    (tmp_path / "one.png").write_bytes(b"x")
    (tmp_path / "two.txt").write_bytes(b"x")
    found = list(discover([tmp_path / "one.png", tmp_path / "two.txt"]))
    assert [(Path(c.path).name, c.skip) for c in found] == [
        ("one.png", None),
        ("two.txt", "not an image name"),
    ]


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("a.png", True),
        ("B.JPEG", True),
        ("c.tif", True),
        (".png", False),  # a hidden file, not a nameless PNG
        (".a.png", False),
        ("~a.png", False),
        ("a.png.part", False),
        ("slide.v2_x1_y2.png", True),  # the last dot starts the extension
        ("a.gif", False),
        ("png", False),
    ],
)
def test_image_names(name: str, image: bool) -> None:
    assert is_image_name(Path(name)) is image


def test_an_output_given_by_name_is_excluded_too(tmp_path: Path) -> None:
    """`patchscan scan results/*` must not take its own report.png (or store) for an input."""
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "report.png").write_bytes(b"x")
    exclude = frozenset({(tmp_path / "report.png").resolve()})
    found = discover([tmp_path / "a.png", tmp_path / "report.png"], exclude=exclude)
    assert [Path(c.path).name for c in found] == ["a.png"]


def test_stamps_are_size_and_mtime(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"12345")
    os.utime(tmp_path / "a.png", ns=(1, 1_700_000_000_123_456_789))
    for found in (discover([tmp_path]), discover([tmp_path / "a.png"])):
        (candidate,) = found
        assert candidate.stamp == (5, 1_700_000_000_123_456_789)
    # The watch stamps the plain strings its events give; a file gone meanwhile has none.
    assert stamp_of(str(tmp_path / "a.png")) == (5, 1_700_000_000_123_456_789)
    assert stamp_of(str(tmp_path / "gone.png")) is None


def test_a_folder_that_cannot_be_listed_is_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan goes on without it, and says so ("patchscan: <folder>: cannot list folder: ..."
    on stderr). Root lists any folder, so the refusal is simulated."""
    import logging

    (tmp_path / "locked").mkdir()
    (tmp_path / "ok.png").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("patchscan.discover")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)  # whatever a --quiet CLI test set
    try:
        found = list(discover([tmp_path]))
    finally:
        logger.removeHandler(handler)
    assert [Path(c.path).name for c in found] == ["ok.png"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, f"{tmp_path / 'locked'}: cannot list folder: Permission denied")
    ]


def test_outputs_are_excluded_in_subfolders_and_only_themselves(tmp_path: Path) -> None:
    """An output in a subfolder is excluded too; a file of another folder that only shares an
    output's name is not; and the walk goes on past an excluded output to the rest."""
    for name in ("a.png", "r.csv", "z.png", "sub/r.csv", "sub/out/r.json", "sub/out/s.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    outputs = frozenset({(tmp_path / "r.csv").resolve(), (tmp_path / "sub/out/r.json").resolve()})
    found = [
        (Path(c.path).relative_to(tmp_path).as_posix(), c.skip)
        for c in discover([tmp_path], outputs)
    ]
    assert found == [
        ("a.png", None),
        ("sub/out/s.png", None),
        ("sub/r.csv", "not an image name"),
        ("z.png", None),
    ]
