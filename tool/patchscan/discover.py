"""Find the images under the paths a user gave: recursive, sorted, hidden files skipped, no loops."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


@dataclass(frozen=True)
class Candidate:
    """A file met while walking: an image to classify, or a file skipped and why."""

    path: Path
    skip: str | None = None


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def discover(roots: Iterable[Path], exclude: frozenset[Path] = frozenset()) -> Iterator[Candidate]:
    """Yield every file under `roots` in sorted order, depth first.

    Files given by name are taken as they are. Inside folders, hidden entries are skipped
    silently, non-image files are yielded with a skip reason, and a folder reached twice (a
    symlink pointing back up) is walked once. Paths in `exclude` (our own outputs) are skipped.
    """
    seen: set[tuple[int, int]] = set()
    for root in roots:
        if root.is_dir():
            yield from _walk(root, seen, exclude)
        elif Path(os.path.realpath(root)) not in exclude:
            yield Candidate(root) if is_image_name(root) else Candidate(root, "not an image name")


def _walk(
    folder: Path, seen: set[tuple[int, int]], exclude: frozenset[Path]
) -> Iterator[Candidate]:
    try:
        info = folder.stat()
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
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if _is_dir(entry):
            yield from _walk(path, seen, exclude)
        elif exclude and Path(os.path.realpath(path)) in exclude:
            continue
        elif is_image_name(path):
            yield Candidate(path)
        else:
            yield Candidate(path, "not an image name")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; a broken or looping link is not a folder
    except OSError:
        return False
