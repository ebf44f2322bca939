"""What a file's name and folders say about it: slide/patient, position in the slide, true class."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

# The IDC dataset's own naming: <patient>_idx5_x<X>_y<Y>_class<N>.png
_PATCH_NAME = re.compile(r"^(?P<group>.+?)_idx\d+_x(?P<x>\d+)_y(?P<y>\d+)(?:_class(?P<cls>\d+))?$")
_COORDS = re.compile(r"(?:^|_)x(?P<x>\d+)_y(?P<y>\d+)(?:_|$)")
_CLASS_SUFFIX = re.compile(r"_class(?P<cls>\d+)$")


class NameInfo(NamedTuple):
    """A tuple, not a dataclass: a scan builds one per file in a worker and sends it back, and a
    tuple is 4x cheaper to build and to pickle."""

    group: str
    x: int | None
    y: int | None
    truth: str | None


def parse_name(path: str | Path, classes: tuple[str, ...]) -> NameInfo:
    """Read group, x, y and the true class from `path`.

    `classes` are the model's class labels, index = class number. A folder names a class by its
    label in any case (`Malignant/`) or by its number (`0/`, `1/`, the IDC dataset's layout).
    The dataset's own names say everything without a look at the folders (and without a Path:
    this runs for every patch of a scan).
    """
    name = os.path.basename(path)
    dot = name.rfind(".")
    stem = name[:dot] if dot > 0 else name
    match = _PATCH_NAME.match(stem)
    if match:
        group, x, y, number = match.groups()
        truth = _numbered_class(number, classes) or _truth_from_folders(path, classes)
        return NameInfo(group, int(x), int(y), truth)
    coords = _COORDS.search(stem)
    suffix = _CLASS_SUFFIX.search(stem)
    return NameInfo(
        _group_from_folders(Path(path), classes),
        int(coords["x"]) if coords else None,
        int(coords["y"]) if coords else None,
        _numbered_class(suffix["cls"] if suffix else None, classes)
        or _truth_from_folders(path, classes),
    )


def _numbered_class(number: str | None, classes: tuple[str, ...]) -> str | None:
    """The class a `_class<N>` suffix names, if it names one of `classes`."""
    return classes[int(number)] if number and int(number) < len(classes) else None


def _truth_from_folders(path: str | Path, classes: tuple[str, ...]) -> str | None:
    for folder in reversed(Path(path).parent.parts[-2:]):
        label = _class_of_folder(folder, classes)
        if label:
            return label
    return None


def _group_from_folders(path: Path, classes: tuple[str, ...]) -> str:
    """The parent folder, skipping a class folder (`patient/1/x.png` belongs to `patient`)."""
    parents = path.absolute().parent.parts
    for folder in reversed(parents):
        if not _class_of_folder(folder, classes):
            return folder
    return parents[-1] if parents else ""


def _class_of_folder(folder: str, classes: tuple[str, ...]) -> str | None:
    if folder.isdigit() and int(folder) < len(classes):
        return classes[int(folder)]
    key = folder.casefold()
    return next((label for label in classes if label.casefold() == key), None)
