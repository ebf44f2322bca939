"""What a file's name and folders say about it: slide/patient, position in the slide, true class."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# The IDC dataset's own naming: <patient>_idx5_x<X>_y<Y>_class<N>.png
_PATCH_NAME = re.compile(r"^(?P<group>.+?)_idx\d+_x(?P<x>\d+)_y(?P<y>\d+)(?:_class(?P<cls>\d+))?$")
_COORDS = re.compile(r"(?:^|_)x(?P<x>\d+)_y(?P<y>\d+)(?:_|$)")
_CLASS_SUFFIX = re.compile(r"_class(?P<cls>\d+)$")


@dataclass(frozen=True)
class NameInfo:
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
    stem = os.path.splitext(os.path.basename(path))[0]
    match = _PATCH_NAME.match(stem)
    x: int | None
    y: int | None
    if match:
        group = match["group"]
        x, y = int(match["x"]), int(match["y"])
    else:
        group = _group_from_folders(Path(path), classes)
        coords = _COORDS.search(stem)
        x, y = (int(coords["x"]), int(coords["y"])) if coords else (None, None)
    return NameInfo(group=group, x=x, y=y, truth=_truth(path, stem, classes))


def _truth(path: str | Path, stem: str, classes: tuple[str, ...]) -> str | None:
    suffix = _CLASS_SUFFIX.search(stem)
    if suffix and int(suffix["cls"]) < len(classes):
        return classes[int(suffix["cls"])]
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
