"""Datasets as lists of examples, split by patient or lesion, loaded with the tool's preprocessing."""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchscan.discover import is_image_name
from patchscan.imaging import load_rgb


@dataclass(frozen=True)
class Example:
    path: Path
    label: int  # 1 = positive class (IDC, malignant)
    group: str  # patient (IDC) or lesion (skin): never split across train / val / test


def idc_examples(root: Path) -> list[Example]:
    """The IDC dataset's layout: <patient>/<0|1>/*.png."""
    examples = [
        Example(path, int(path.parent.name), patient.name)
        for patient in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(patient.glob("[01]/*.png"))
    ]
    if not examples:
        raise SystemExit(f"{root}: no <patient>/<0|1>/*.png patches found")
    return examples


def skin_examples(root: Path) -> list[Example]:
    """HAM10000/ISIC with metadata.csv (grouped by lesion_id), else plain <class>/ folders."""
    metadata = root / "metadata.csv"
    examples = (
        _skin_from_metadata(root, metadata) if metadata.is_file() else _skin_from_folders(root)
    )
    if not examples:
        raise SystemExit(f"{root}: no benign/malignant images found")
    return examples


def _skin_from_metadata(root: Path, metadata: Path) -> list[Example]:
    examples = []
    with open(metadata, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = root / row["label"] / f"{row['image_id']}.jpg"
            if path.is_file():
                # ISIC 2017 images carry no lesion id: each is its own lesion.
                group = row["lesion_id"] or row["image_id"]
                examples.append(Example(path, int(row["label"] == "malignant"), group))
    return examples


def _skin_from_folders(root: Path) -> list[Example]:
    """Any `.../benign/*` and `.../malignant/*` below root (e.g. train/Benign, test/Malignant)."""
    examples = []
    for path in sorted(root.rglob("*")):
        folder = path.parent.name.casefold()
        if folder in ("benign", "malignant") and is_image_name(path):
            examples.append(Example(path, int(folder == "malignant"), path.stem))
    return examples


def split_by_group(
    examples: Sequence[Example], seed: int, val: float = 0.15, test: float = 0.2
) -> dict[str, list[Example]]:
    """Train / val / test with every group in exactly one split.

    Groups are shuffled with `seed`, then dealt so each split gets about its share of examples
    and of positives (groups stratified by positive rate, shuffled within a stratum).
    """
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.group, []).append(example)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    # Stable sort on a coarse positive rate: strata of similar groups, shuffled within.
    names.sort(key=lambda name: round(4 * float(np.mean([e.label for e in groups[name]]))))
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    shares = {"test": test, "val": val, "train": 1 - val - test}
    for name in names:
        splits[_neediest(splits, shares)].extend(groups[name])
    return splits


def _neediest(splits: dict[str, list[Example]], shares: dict[str, float]) -> str:
    """The split furthest below its share of examples so far (keeps sizes proportional)."""
    done = max(sum(len(v) for v in splits.values()), 1)
    return min(shares, key=lambda name: len(splits[name]) / done - shares[name])


def load_images(examples: Sequence[Example], size: tuple[int, int]) -> np.ndarray:
    """uint8 array (N, H, W, 3) through the tool's own decode and resize."""
    with ThreadPoolExecutor() as pool:
        return np.stack(list(pool.map(lambda e: load_rgb(e.path, size), examples, chunksize=64)))


def labels(examples: Sequence[Example]) -> np.ndarray:
    return np.array([e.label for e in examples], dtype=np.float32)
