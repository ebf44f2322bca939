"""Trainer: splits never share a patient or lesion; a tiny real training run exports a working model."""

import json
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
    context = session.info.context  # patches of slides: the scan's slide context comes along
    assert context is not None and (context.step, context.radius) == (50, 2)
    assert (
        context.threshold
        == json.loads((out / "metrics.json").read_text())["test_context"]["threshold"]
    )
    assert set(session.info.metrics["slide_context"]) >= {"roc_auc", "f1", "balanced_accuracy"}
    probabilities = session.predict(
        np.random.default_rng(0).random((4, 50, 50, 3), dtype=np.float32)
    )
    assert probabilities.shape == (4,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert "Research use only" in (out / "idc.md").read_text()


def test_keep_best_restores_the_best_epoch_and_stops_after_patience() -> None:
    keras = pytest.importorskip("keras")
    from patchscan_train.train import KeepBest

    # Brighter images are positive: a positive weight ranks them perfectly, a negative one backwards.
    images = np.repeat(np.arange(0, 250, 25, dtype=np.uint8), 12).reshape(10, 2, 2, 3)
    y = (np.arange(10) >= 5).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((2, 2, 3)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")  # as fit() does: sets stop_training
    keep = KeepBest(images, y, patience=2)
    keep.set_model(model)
    kernel, bias = model.get_weights()
    for epoch, sign in enumerate((1.0, -1.0, -1.0)):
        model.set_weights([sign * np.ones_like(kernel), bias])
        logs: dict[str, float] = {}
        keep.on_epoch_end(epoch, logs)
        assert logs["val_auc"] == pytest.approx(1.0 if sign > 0 else 0.0)
        assert model.stop_training == (epoch == 2)
    keep.on_train_end()
    assert (model.get_weights()[0] > 0).all()


def test_shades_of_grey_removes_a_colour_cast() -> None:
    from patchscan_train.nets import ShadesOfGrey

    photo = np.random.default_rng(0).uniform(0.2, 0.8, (1, 32, 32, 3)).astype(np.float32)
    cast = photo * np.array([1.0, 0.8, 0.6], np.float32)  # a warm light
    corrected = np.asarray(ShadesOfGrey()(cast))
    plain = np.asarray(ShadesOfGrey()(photo))
    means = corrected.reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 0.01  # the channels are balanced again
    ratio = corrected / plain  # the cast is gone, not just reduced: only brightness is left
    assert ratio.std() / ratio.mean() < 1e-5
