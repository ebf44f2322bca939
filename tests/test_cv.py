"""Cross-validation by patient, and the operating point, calibration and review band fitted on
its out-of-fold scores."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")

from patchscan import metrics  # noqa: E402
from patchscan.model import read_info  # noqa: E402
from patchscan.results import Calibration, Labels  # noqa: E402
from patchscan_train import data, operating  # noqa: E402
from patchscan_train.cv import merge_runs, patient_folds, run_cv, training_patients  # noqa: E402
from patchscan_train.cv_report import analyse, deciding_scores, markdown  # noqa: E402
from patchscan_train.export import count_macs  # noqa: E402
from patchscan_train.final import merged_reports, rewrite_card, train_final  # noqa: E402
from patchscan_train.tasks import TASKS  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples" / "idc"


def examples(patients: int, seed: int = 0) -> list[data.Example]:
    rng = np.random.default_rng(seed)
    out = []
    for p in range(patients):
        positives = 0 if p == 0 else int(rng.integers(1, 40))
        for i in range(50):
            out.append(data.Example(Path(f"{p}/{i}.png"), int(i < positives), f"patient{p}"))
    return out


def test_folds_are_disjoint_cover_every_patient_and_each_has_positives() -> None:
    folds = patient_folds(examples(32), k=8, seed=0)
    members = [name for fold in folds for name in fold]
    assert len(members) == len(set(members)) == 32  # no patient in two folds, none left out
    assert all(len(fold) == 4 for fold in folds)
    positive = {e.group for e in examples(32) if e.label}
    assert all(set(fold) & positive for fold in folds)
    assert patient_folds(examples(32), k=8, seed=0) == folds  # the seed fixes them
    assert patient_folds(examples(32), k=8, seed=1) != folds


def test_a_learning_curve_trains_on_fewer_folds_never_on_the_held_out_or_validation_ones() -> None:
    folds = [[f"p{f}a", f"p{f}b"] for f in range(8)]
    assert training_patients(folds, 6, None) == [p for f in (0, 1, 2, 3, 4, 5) for p in folds[f]]
    for held_out in range(8):
        for count in range(1, 7):
            patients = training_patients(folds, held_out, count)
            assert len(patients) == len(set(patients)) == 2 * count
            validation = folds[(held_out + 1) % 8]
            assert not set(patients) & {*folds[held_out], *validation}
    assert training_patients(folds, 7, 2) == ["p1a", "p1b", "p2a", "p2b"]  # the next ones, in turn
    for count in (0, 7):
        with pytest.raises(ValueError, match="train on 1 to 6 of 8 folds"):
            training_patients(folds, 0, count)
    with pytest.raises(ValueError, match="train on 1 to 7 of 8 folds"):
        training_patients(folds, 0, 8, validated=False)
    # Without a validation fold (as `final` trains): every fold but the held-out one.
    unvalidated = training_patients(folds, 3, None, validated=False)
    assert sorted(unvalidated) == sorted(p for f in (0, 1, 2, 4, 5, 6, 7) for p in folds[f])
    assert training_patients(folds, 7, 1, validated=False) == ["p0a", "p0b"]


def test_platt_scaling_recovers_a_known_calibration() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, 40_000)
    truth = rng.random(40_000) < np.vectorize(Calibration(1.7, -0.6))(raw)
    fitted = operating.fit_platt(truth, raw)
    assert fitted.a == pytest.approx(1.7, abs=0.06) and fitted.b == pytest.approx(-0.6, abs=0.05)
    calibrated = np.vectorize(fitted)(raw)
    assert operating.expected_calibration_error(truth, calibrated) < 0.01
    assert operating.expected_calibration_error(truth, raw) > 0.05


def overlapping_scores(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.3
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1.2, n) + np.where(truth, 1.5, -1.5))))
    return truth, scores


def test_review_band_keeps_the_decided_error_under_target_and_holds_the_threshold() -> None:
    truth, scores = overlapping_scores()
    threshold = 0.5
    previous_decided = 1.0
    for target in (0.10, 0.05, 0.02):
        choice = operating.review_band(truth, scores, threshold, target)
        low, high = choice.band.low, choice.band.high
        assert low <= threshold <= high
        decided = (scores < low) | (scores >= high)
        error = np.mean((scores[decided] >= threshold) != truth[decided])
        assert error <= target and error == pytest.approx(choice.error)
        assert 0 < choice.decided < previous_decided  # a stricter target reviews more
        previous_decided = choice.decided
    base_error = np.mean((scores >= threshold) != truth)
    assert base_error > 0.10  # the band is doing the work


def tiny_patients(root: Path) -> Path:
    """The 2 sample patients as 6 pseudo-patients (every third column of a slide), each with
    both classes."""
    for path in sorted(SAMPLES.glob("*/*/*.png"))[::2]:
        column = int(path.stem.split("_x")[1].split("_")[0]) // 50
        patient = f"{path.parts[-3]}{column % 3}"
        target = root / patient / path.parent.name / path.name.replace(path.parts[-3], patient, 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return root


def test_a_tiny_cv_run_scores_every_patch_once_out_of_fold(tmp_path: Path) -> None:
    """The 2 sample patients as 6 pseudo-patients (every third column of a slide), each with
    both classes: each patch is scored by the fold that held its patient out, and the report's
    figures come from those scores."""
    root = tiny_patients(tmp_path / "data")
    variants = ("plain", "light-outline", "plain+reinhard", "plain+adabn")
    oof_path = run_cv("idc", root, tmp_path / "cv", k=3, epochs=1, seed=0, variants=variants)
    saved = np.load(oof_path)
    for variant in variants:  # the test-time scorings too, each patch once, by plain's models
        assert not np.isnan(saved[f"oof_{variant}"]).any()
    assert not np.allclose(saved["oof_plain"], saved["oof_plain+adabn"])
    record = json.loads((tmp_path / "cv" / "cv.json").read_text())
    names = [name for fold in record["folds"] for name in fold]
    assert len(names) == len(set(names)) == len(set(saved["groups"]))
    report = analyse(oof_path, "idc")
    fitted = report["plain"]["fitted"]
    assert 0 <= fitted["threshold"] <= 1 and len(fitted["calibration_context"]) == 2
    assert fitted["review_band"][0] <= fitted["threshold"] <= fitted["review_band"][1]
    # The operating point is the task's own rule (idc: the best F1) on the calibrated scores.
    scores = deciding_scores(TASKS["idc"], saved["paths"], saved["oof_plain"], fitted)
    best_f1 = metrics.f1_threshold(saved["y"].astype(bool), scores)
    assert fitted["threshold"] == pytest.approx(best_f1)
    assert report["plain"]["nested"]["pooled"]["n"] == len(saved["y"])
    assert math.isfinite(report["plain"]["nested"]["ece"])

    # The shipped model: the recipe on every patient, with the CV's choices in its metadata.
    summary = train_final("idc", root, tmp_path / "cv", "plain", tmp_path / "final")
    info = read_info(tmp_path / "final" / "idc.onnx")
    assert info.context is not None
    assert info.context.threshold == pytest.approx(fitted["threshold"], abs=1e-6)
    assert info.threshold == pytest.approx(fitted["threshold_probability"], abs=1e-6)
    labels = Labels.of(info)
    assert labels.context_calibration is not None and labels.context_review is not None
    assert labels.review_target == 0.05
    nested = report["plain"]["nested"]["pooled"]["balanced_accuracy"]
    assert summary["balanced_accuracy"] == pytest.approx(nested, abs=1e-4)  # the card leads with it
    assert info.stain is not None and info.stain["drift_limit"] > 0  # the scan flags outliers
    assert len(info.stain["reference"]["mean"]) == 3 and 1 <= info.stain["slides"] <= 6
    card = (tmp_path / "final" / "idc.md").read_text()
    assert "Cross-validation by patient" in card and "Needs review" in card
    assert "trained on 1 of the other folds and stopped early on one more" in card
    # The card written again from the run and its CV (as `patchscan-train card` does) is the same.
    (tmp_path / "final" / "idc.md").unlink()
    rewrite_card("idc", tmp_path / "final", [tmp_path / "cv"], "plain")
    assert (tmp_path / "final" / "idc.md").read_text() == card


def test_an_ensembles_cv_is_the_mean_of_its_runs_and_it_ships_as_one_network(
    tmp_path: Path,
) -> None:
    """Two CV runs of plain on the same folds (here one run and a copy with other scores) make
    the CV of plain-x2: their mean, each run's own scores kept beside it; `final` then trains two
    members and exports their mean as one ONNX file."""
    root = tiny_patients(tmp_path / "data")
    first = run_cv("idc", root, tmp_path / "a", k=3, epochs=1, seed=0, variants=("plain",))
    second = tmp_path / "b"
    second.mkdir()
    (second / "cv.json").write_text((tmp_path / "a" / "cv.json").read_text())
    saved = dict(np.load(first))
    other = np.random.default_rng(1).random(len(saved["y"])).astype(np.float32)
    np.savez_compressed(second / "oof.npz", **{**saved, "oof_plain": other})
    merged = merge_runs([tmp_path / "a", second], "plain", tmp_path / "ens")
    scores = np.load(merged)
    np.testing.assert_allclose(scores["oof_plain-x2"], (saved["oof_plain"] + other) / 2, rtol=1e-6)
    np.testing.assert_array_equal(scores["oof_plain #2"], other)
    report = analyse(merged, "idc")
    assert {"plain-x2", "plain #1", "plain #2"} <= set(report)
    record = json.loads((second / "cv.json").read_text())
    assert record["train_folds"] == 1  # 3 folds: one trains, one validates, one is held out
    changes = ({"folds": record["folds"][::-1]}, {"epochs": 2}, {"train_folds": 2})
    for changed in (*changes, {"validation": False}):
        (second / "cv.json").write_text(json.dumps({**record, **changed}))
        with pytest.raises(ValueError, match="other folds, epochs or training folds"):
            merge_runs([tmp_path / "a", second], "plain", tmp_path / "bad")

    train_final("idc", root, tmp_path / "ens", "plain-x2", tmp_path / "final")
    info = read_info(tmp_path / "final" / "idc.onnx")
    assert info.training["members"] == 2 and info.training["seed"] == 0
    figures = json.loads((tmp_path / "final" / "metrics.json").read_text())
    single = count_macs(TASKS["idc"].build(TASKS["idc"].size))
    assert figures["macs"] == 2 * single and len(figures["history"]) == 2
    assert figures["onnx_max_difference"] < 1e-4
    assert "An ensemble: 2 networks" in (tmp_path / "final" / "idc.md").read_text()


def test_a_test_time_scoring_needs_the_recipe_whose_models_it_scores(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="add --variant plain"):
        run_cv("idc", SAMPLES, tmp_path, k=3, epochs=1, seed=0, variants=("plain+adabn",))


def test_cv_reports_merge_only_on_the_same_folds() -> None:
    folds = [["a"], ["b"], ["c"], ["d"]]
    plain = {"folds": folds, "epochs": 10, "plain": {"fitted": 1}}
    other = {"folds": folds, "epochs": 10, "reinhard": {"fitted": 2}}
    assert merged_reports([plain, other]) == {**plain, "reinhard": {"fitted": 2}}
    for changed in (
        {"folds": folds[::-1]},
        {"epochs": 20},
        {"train_folds": 1},  # a learning curve's point
        {"validation": False},  # trained on 3 folds, not stopped on one
    ):
        with pytest.raises(ValueError, match="not comparable"):
            merged_reports([plain, {**other, **changed}])
    recorded = {**other, "train_folds": 2, "validation": True}  # recorded or not: all k-2
    assert merged_reports([plain, recorded])["reinhard"] == {"fitted": 2}
    pooled = {"n": 5, "roc_auc": float("nan"), "f1": 0.75}  # no ROC AUC without negatives
    member = {"folds": plain["folds"], "epochs": 10, "plain #2": {"nested": {"pooled": pooled}}}
    analysed_again = {"nested": {"pooled": {**pooled, "f1": 0.75 + 1e-12}}}  # the last bits
    other = {"nested": {"pooled": {**pooled, "f1": 0.7}}}
    again = {**member, "plain": analysed_again, "plain+adabn": other}
    merged = merged_reports([member, again])  # an ensemble's member, and the run it came from
    assert set(merged) == {"folds", "epochs", "plain #2", "plain+adabn"}


def test_without_validation_each_fold_trains_on_every_other_fold_as_final_does(
    tmp_path: Path,
) -> None:
    root = tiny_patients(tmp_path / "data")
    oof = run_cv(
        "idc", root, tmp_path / "cv", k=3, epochs=1, seed=0, variants=("plain",), validate=False
    )
    assert not np.isnan(np.load(oof)["oof_plain"]).any()
    record = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert record["validation"] is False and record["train_folds"] == 2
    report = analyse(oof, "idc")
    assert report["validation"] is False and report["train_folds"] == 2
    assert "trained on 2 of the other folds for all 1 epochs" in markdown(report, "CV")


def test_the_command_line_refuses_more_training_folds_than_there_are() -> None:
    from click.testing import CliRunner

    from patchscan_train.cli import main

    base = ["cv", "idc", "--data", str(SAMPLES), "--folds", "4"]
    too_many = CliRunner().invoke(main, [*base, "--train-folds", "3"])
    assert too_many.exit_code == 2 and "train on 1 to 2 of 4 folds, not 3" in too_many.output
    unvalidated = CliRunner().invoke(main, [*base, "--train-folds", "4", "--no-validation"])
    assert unvalidated.exit_code == 2 and "train on 1 to 3 of 4 folds" in unvalidated.output


def test_final_refuses_to_ship_from_a_learning_curves_run(tmp_path: Path) -> None:
    """Its figures come from fold models that saw fewer patients than the shipped model will."""
    from click.testing import CliRunner

    from patchscan_train.cli import main

    record = {"task": "idc", "folds": [["a"], ["b"], ["c"], ["d"]], "epochs": 1, "seed": 0}
    (tmp_path / "cv.json").write_text(json.dumps({**record, "train_folds": 1}))
    (tmp_path / "cv-report.json").write_text(json.dumps({"plain": {}}))
    args = ["final", "idc", "--data", str(SAMPLES), "--cv", str(tmp_path), "--out", "unused"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "a learning curve" in refused.output
    assert not Path("unused").exists()
