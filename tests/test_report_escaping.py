"""The HTML report shows text from files, folders and the model's own metadata: none of it may
run as markup, wherever it lands in the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from patchscan.cli import main

IMG = "<img src=x onerror=alert({})>"
SCRIPT = "<script>alert({})</script>"


def crafted_model(tiny_model: Path, folder: Path) -> Path:
    """tiny.onnx under a file name that is markup, with markup in every text its metadata has."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_model))
    (entry,) = [e for e in model.metadata_props if e.key == "patchscan"]
    meta = json.loads(entry.value)
    meta |= {
        "name": IMG.format(1),
        "version": SCRIPT.format(2),
        "description": IMG.format(3),
        "license": SCRIPT.format(4),
        "classes": [IMG.format(5), SCRIPT.format(6)],
        "positive_class": SCRIPT.format(6),
        "metrics": {"balanced_accuracy": IMG.format(7), "roc_auc": SCRIPT.format(8)},
        "training": {"data": IMG.format(9), "split": SCRIPT.format(10)},
    }
    entry.value = json.dumps(meta)
    path = folder / (IMG.format(11) + ".onnx")
    onnx.save(model, str(path))
    return path


def test_markup_from_the_model_and_its_file_name_is_escaped(
    tiny_model: Path, patches: Path, tmp_path: Path
) -> None:
    model = crafted_model(tiny_model, tmp_path)
    group = tmp_path / "in" / IMG.format(12)  # a folder: the name of the slide its patches are
    group.mkdir(parents=True)
    for index, patch in enumerate(sorted(patches.rglob("*.png"))):
        shutil.copy(patch, group / f"x{1 + 50 * index}_y1.png")
    report = tmp_path / "r.html"
    args = ["scan", str(tmp_path / "in"), "--model", str(model), "--report", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    page = report.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script" not in page
    for number in range(1, 13):  # each one is in the page, as text
        assert IMG.format(number).replace("<", "&lt;").replace(">", "&gt;") in page or (
            SCRIPT.format(number).replace("<", "&lt;").replace(">", "&gt;") in page
        ), number
