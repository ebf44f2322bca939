"""Labels.of and Calibration on the bundled models' own metadata: gaps `make mutate` found in
results.py (the label rule) and closed (docs/mutation.md)."""

from __future__ import annotations

import dataclasses

import pytest

from patchscan.errors import ModelError
from patchscan.model import bundled_models, read_info
from patchscan.naming import parse_name
from patchscan.results import Calibration, Labels, Result


def test_the_idc_models_context_calibration_is_the_one_in_its_metadata() -> None:
    info = read_info(bundled_models()["idc"])
    labels = Labels.of(info)
    assert info.calibration is not None and "context" in info.calibration
    fitted = Calibration(info.calibration["context"]["a"], info.calibration["context"]["b"])
    for score in (0.05, 0.3, 0.5, 0.9):
        assert labels.calibrated_context(score) == pytest.approx(fitted(score))
    assert labels.calibrated_context(0.3) != pytest.approx(0.3)  # it does calibrate


def test_a_model_without_slide_context_has_no_context_threshold_or_band() -> None:
    labels = Labels.of(read_info(bundled_models()["skin"]))
    assert labels.context_threshold is None and labels.context_review is None
    assert labels.context_calibration is None
    with pytest.raises(ValueError, match="no slide context"):
        labels.of_context(0.5)


def test_threshold_of_names_the_threshold_that_decided_the_label() -> None:
    labels = Labels.of(read_info(bundled_models()["idc"]))
    assert labels.context_threshold is not None and labels.context_threshold != labels.threshold
    name = parse_name("9035_idx5_x51_y101_class1.png", labels.classes)
    alone = Result("a.png", name, probability=0.4, label="IDC")
    with_context = dataclasses.replace(alone, context=0.4)
    assert labels.threshold_of(alone) == labels.threshold
    assert labels.threshold_of(with_context) == labels.context_threshold
    skin = Labels.of(read_info(bundled_models()["skin"]))
    assert skin.threshold_of(with_context) == skin.threshold  # no context rule to use


def test_calibration_stays_finite_however_far_out_the_logit_lands() -> None:
    """A steep fit (large a) sends the logit of a clipped score past what exp() can hold: each
    side of 0 takes the form of the sigmoid that cannot overflow."""
    steep = Calibration(100.0, 0.0)
    assert steep(1e-9) == pytest.approx(0.0, abs=1e-300)
    assert steep(1 - 1e-9) == pytest.approx(1.0)


def test_broken_calibration_metadata_is_one_error_naming_the_model() -> None:
    info = read_info(bundled_models()["idc"])
    broken = dataclasses.replace(info, calibration={"probability": {"a": 1.0}})  # no b
    with pytest.raises(ModelError, match=f"model {info.name}: calibration or review metadata"):
        Labels.of(broken)
