"""Trainer: splits never share a patient or lesion; a tiny real training run exports a working model."""

import shutil
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")

from patchscan.model import ModelSession  # noqa: E402
from patchscan_train import data  # noqa: E402
from patchscan_train.run import run_training  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples" / "idc"


def test_split_never_puts_a_group_in_two_splits() -> None:
    examples = [
        data.Example(Path(f"{g}/{i}.png"), i % 3 == 0, f"g{g}")
        for g in range(40)
        for i in range(g % 7 + 1)
    ]
    for seed in range(5):
        splits = data.split_by_group(examples, seed)
        groups = {name: {e.group for e in part} for name, part in splits.items()}
        assert not groups["train"] & groups["val"]
        assert not groups["train"] & groups["test"]
        assert not groups["val"] & groups["test"]
        assert sum(len(p) for p in splits.values()) == len(examples)
        assert all(splits.values())


def test_split_is_seeded() -> None:
    examples = [data.Example(Path(f"{g}.png"), g % 2, f"g{g}") for g in range(30)]
    assert data.split_by_group(examples, 1) == data.split_by_group(examples, 1)
    assert data.split_by_group(examples, 1) != data.split_by_group(examples, 2)


def test_skin_groups_by_lesion(tmp_path: Path) -> None:
    for label, name in (("benign", "a"), ("benign", "b"), ("malignant", "c")):
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(next(SAMPLES.rglob("*.png")), tmp_path / label / f"{name}.jpg")
    (tmp_path / "metadata.csv").write_text(
        "image_id,lesion_id,dx,label,source,width,height\n"
        "a,L1,nv,benign,HAM10000,50,50\nb,L1,nv,benign,HAM10000,50,50\nc,,mel,malignant,ISIC2017,50,50\n"
    )
    examples = data.skin_examples(tmp_path)
    assert [(e.path.stem, e.label, e.group) for e in examples] == [
        ("a", 0, "L1"),
        ("b", 0, "L1"),
        ("c", 1, "c"),
    ]


def pseudo_patients(root: Path) -> Path:
    """Real sample patches dealt into 8 pseudo-patients, so a split has a few groups in each part."""
    for index, source in enumerate(sorted(SAMPLES.rglob("*.png"))[::3]):
        target = root / f"p{index % 8}" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return root


def test_tiny_training_run_exports_a_model_the_tool_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_training(
        "idc", pseudo_patients(tmp_path / "data"), out, epochs=1, seed=0, limit=48
    )
    for name in ("idc.onnx", "idc.md", "metrics.json", "report.html", "roc.png", "curves.png"):
        assert (out / name).is_file(), name
    session = ModelSession(out / "idc.onnx")
    assert session.info.classes == ("non-IDC", "IDC") and session.info.input_size == (50, 50)
    assert session.info.threshold == pytest.approx(summary["threshold"], abs=1e-4)
    assert session.info.training["split"] == "by patient"
    probabilities = session.predict(
        np.random.default_rng(0).random((4, 50, 50, 3), dtype=np.float32)
    )
    assert probabilities.shape == (4,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert "Research use only" in (out / "idc.md").read_text()
