"""Find the images under the paths a user gave: recursive, sorted, hidden files skipped, no loops."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
NOT_AN_IMAGE = "not an image name"


Stamp = tuple[int, int]  # (size, mtime_ns): a file whose stamp is unchanged is not re-read


@dataclass(frozen=True)
class Candidate:
    """A file met while walking: an image to classify, or a file skipped and why.

    Its path is a plain string, as the walk found it: a scan handles 100k of them, and a Path
    costs more to build and to send to a worker process than reading the image's name does.
    """

    path: str
    skip: str | None = None
    stamp: Stamp | None = None  # None when the file cannot be stat'ed; decoding will say why


def is_image_name(path: str | Path) -> bool:
    """Hidden files and `~` temporaries (editors, copy tools) are never images to classify."""
    return _is_image_name(os.path.basename(path))


def _is_image_name(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_SUFFIXES and not name.startswith((".", "~"))


Found = tuple[str, str | None, Stamp | None]  # a file met on the walk: path, skip reason, stamp


def discover(roots: Iterable[Path], exclude: frozenset[Path] = frozenset()) -> Iterator[Candidate]:
    """Yield every file under `roots` in sorted order, depth first (see walk)."""
    for path, skip, stamp in walk(roots, exclude):
        yield Candidate(path, skip, stamp)


def walk(roots: Iterable[Path], exclude: frozenset[Path] = frozenset()) -> Iterator[Found]:
    """Every file under `roots` in sorted order, depth first, as plain strings and tuples: a
    rescan that only checks whether anything changed builds no Path for 100k files.

    Files given by name are taken as they are. Inside folders, hidden entries are skipped
    silently, non-image files are yielded with a skip reason, and a folder reached twice (a
    symlink pointing back up) is walked once. Paths in `exclude` (our own outputs) are skipped.
    """
    seen: set[tuple[int, int]] = set()
    excluded_names = frozenset(path.name for path in exclude)
    for root in roots:
        if root.is_dir():
            yield from _walk(str(root), seen, exclude, excluded_names)
        elif Path(os.path.realpath(root)) not in exclude:
            if is_image_name(root):
                yield str(root), None, stamp_of(root)
            else:
                yield str(root), NOT_AN_IMAGE, None


def _walk(
    folder: str,
    seen: set[tuple[int, int]],
    exclude: frozenset[Path],
    excluded_names: frozenset[str],
) -> Iterator[Found]:
    try:
        info = os.stat(folder)
        key = (info.st_dev, info.st_ino)
        if key in seen:
            log.debug("%s: already walked (symlink loop or duplicate), skipped", folder)
            return
        seen.add(key)
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        log.warning("%s: cannot list folder: %s", folder, exc.strerror or exc)
        return
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        if _is_dir(entry):
            yield from _walk(entry.path, seen, exclude, excluded_names)
        elif name in excluded_names and Path(os.path.realpath(entry.path)) in exclude:
            continue  # (realpath only for a matching name: it costs more than the rest)
        elif _is_image_name(name):
            yield entry.path, None, stamp_of(entry)
        else:
            yield entry.path, NOT_AN_IMAGE, None


def stamp_of(file: str | Path | os.DirEntry[str]) -> Stamp | None:
    try:
        info = file.stat() if isinstance(file, os.DirEntry) else os.stat(file)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; a broken or looping link is not a folder
    except OSError:
        return False
