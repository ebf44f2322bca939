"""Trainer: splits never share a patient or lesion; a tiny real training run exports a working model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")

from patchscan.model import Model, Session  # noqa: E402
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
    session = Session(Model.open(out / "idc.onnx"))
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


def test_reevaluating_a_run_gives_its_own_results_again(tmp_path: Path) -> None:
    from patchscan_train.run import reevaluate

    run = tmp_path / "run"
    patients = pseudo_patients(tmp_path / "data")
    run_training("idc", patients, run, epochs=1, seed=0, limit=48)
    again = tmp_path / "again"
    reevaluate("idc", patients, run, again)
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (run, again))
    for key in ("threshold", "history", "training_seconds", "split"):
        assert second[key] == first[key], key
    assert second["test"]["roc_auc"] == pytest.approx(first["test"]["roc_auc"], abs=1e-6)
    assert (
        Model.open(again / "idc.onnx").info.threshold == Model.open(run / "idc.onnx").info.threshold
    )
    assert (again / "idc.keras").is_file()  # the new folder can be re-evaluated in turn
    old = tmp_path / "old"  # a run folder from before the history was kept
    shutil.copytree(run, old)
    recorded = json.loads((old / "metrics.json").read_text())
    del recorded["history"]
    (old / "metrics.json").write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="no training history"):
        reevaluate("idc", patients, old, old)
    shutil.rmtree(patients / "p0")  # other data, another split: refused, not misreported
    with pytest.raises(ValueError, match="not the run's"):
        reevaluate("idc", patients, run, tmp_path / "other")


def tiny_lopsided_model(size: int = 8) -> "keras.Model":  # noqa: F821
    """A conv net that sees where things are: its output changes when the image is flipped."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def dihedral(images: np.ndarray) -> list[np.ndarray]:
    """The 8 views of (N, S, S, C) images, by numpy."""
    turned = images.transpose(0, 2, 1, 3)
    return [v for i in (images, turned) for v in (i, i[:, ::-1], i[:, :, ::-1], i[:, ::-1, ::-1])]


def test_dihedral_views_average_the_model_over_flips_and_rotations() -> None:
    from patchscan_train.nets import averaged_over_dihedral_views

    model = tiny_lopsided_model()
    served = averaged_over_dihedral_views(model)
    images = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
    plain = model.predict(images, verbose=0)
    assert np.abs(model.predict(images[:, ::-1], verbose=0) - plain).max() > 1e-3
    expected = np.mean([model.predict(v, verbose=0) for v in dihedral(images)], axis=0)
    got = served.predict(images, verbose=0)
    assert got.shape == (5, 1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    for view in dihedral(images):  # the mean is the same whichever way up the image comes
        np.testing.assert_allclose(served.predict(view, verbose=0), got, atol=1e-6)


def test_dihedral_views_refuse_images_that_are_not_square() -> None:
    import keras

    from patchscan_train.nets import averaged_over_dihedral_views

    inputs = keras.Input((8, 6, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="square"):
        averaged_over_dihedral_views(model)


def test_dihedral_views_survive_onnx_export(tmp_path: Path) -> None:
    from patchscan.imaging import to_model_input
    from patchscan.model import ModelInfo
    from patchscan_train.export import export_onnx
    from patchscan_train.nets import averaged_over_dihedral_views

    served = averaged_over_dihedral_views(tiny_lopsided_model())
    info = ModelInfo("tiny", "1", "test", ("a", "b"), (8, 8), 0.5)
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    difference = export_onnx(served, info, tmp_path / "tiny.onnx", images)
    assert difference <= 1e-5
    session = Session(Model.open(tmp_path / "tiny.onnx"))
    batch = to_model_input(images)
    np.testing.assert_allclose(
        session.predict(np.ascontiguousarray(batch[:, ::-1, ::-1])),
        session.predict(batch),
        atol=1e-6,
    )


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


def test_distilled_student_learns_the_mean_of_label_and_teacher() -> None:
    keras = pytest.importorskip("keras")
    from patchscan_train.train import Distilled

    def one_unit(bias: float) -> keras.Model:
        return keras.Sequential(
            [
                keras.Input((2, 2, 3)),
                keras.layers.Flatten(),
                keras.layers.Dense(
                    1,
                    activation="sigmoid",
                    kernel_initializer="zeros",
                    bias_initializer=keras.initializers.Constant(bias),
                ),
            ]
        )

    images = np.random.default_rng(0).random((64, 2, 2, 3)).astype(np.float32)
    labels = np.zeros(64, np.float32)
    teacher, student = one_unit(10.0), one_unit(0.0)  # the teacher says positive (~1) to all
    model = Distilled(student, teacher)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    model.fit(images, labels, epochs=100, batch_size=64, verbose=0)
    # Alone, the labels would drive the student to 0; half the target is the teacher's ~1.
    assert student.predict(images, verbose=0).mean() == pytest.approx(0.5, abs=0.03)
    assert teacher.get_weights()[1][0] == pytest.approx(10.0)  # the teacher learns nothing


def test_the_cli_offers_exactly_the_tasks_the_registry_has() -> None:
    """cli.py names the tasks itself (its --help must not import TensorFlow): kept in step."""
    from patchscan_train import cli, tasks

    assert set(cli.TASKS) == set(tasks.TASKS)
