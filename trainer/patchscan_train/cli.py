"""patchscan-train: train, evaluate and export the idc and skin models."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from patchscan_train.variants import TEST_TIME, VARIANTS

TASKS = ("idc", "skin")  # tasks.TASKS, named here so that --help does not import TensorFlow
FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)  # data and run folders
F = TypeVar("F", bound=Callable[..., Any])


def cv_runs(help: str) -> Callable[[F], F]:
    """`--cv FOLDER`, given once or more: the CV runs a command combines."""
    return click.option("--cv", "cv_folders", type=FOLDER, multiple=True, required=True, help=help)


@click.group()
def main() -> None:
    """Train patchscan's models from the datasets' own folder layouts."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option("--data", type=FOLDER, required=True)
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [runs/TASK-DATE].")
@click.option(
    "--epochs", type=click.IntRange(1), help="Most epochs (early stopping may end sooner)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(8), help="Use only this many images (smoke tests).")
def train(
    task: str, data: Path, out: Path | None, epochs: int | None, seed: int, limit: int | None
) -> None:
    """Train TASK on DATA, evaluate on held-out patients/lesions, export RUN/TASK.onnx."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.run import run_training

    out = out or Path("runs") / f"{task}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    summary = run_training(task, data, out, epochs=epochs, seed=seed, limit=limit)
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option("--data", type=FOLDER, required=True)
@click.option(
    "--run",
    "run_folder",
    type=FOLDER,
    required=True,
    help="A finished run folder (TASK.keras, metrics.json).",
)
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [the --run folder].")
def reevaluate(task: str, data: Path, run_folder: Path, out: Path | None) -> None:
    """Evaluate and export a trained RUN again without training: the same split, the task's
    current threshold rule, dihedral views and slide context."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.run import reevaluate as reevaluate_run

    try:
        summary = reevaluate_run(task, data, run_folder, out or run_folder)
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"{run_folder}: cannot re-evaluate: {exc}") from None
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option("--data", type=FOLDER, required=True)
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [runs/TASK-cv-DATE].")
@click.option("--folds", type=click.IntRange(3), default=8, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice([*VARIANTS, *TEST_TIME]),
    help="Recipes to compare fold by fold, and test-time scorings of plain's models [all].",
)
@click.option("--limit", type=click.IntRange(8), help="Use only this many images (smoke tests).")
@click.option(
    "--train-folds",
    type=click.IntRange(1),
    help="Train each fold's models on only this many of the training folds (FOLDS-2, or "
    "FOLDS-1 with --no-validation): a learning curve, same held-out patients, fewer training "
    "patients [all]. An epoch shrinks with them; the learning-rate schedule keeps its shape "
    "over --epochs.",
)
@click.option(
    "--no-validation",
    is_flag=True,
    help="Train each fold's models on all other folds for all --epochs and keep the last "
    "weights, as `final` trains the shipped model (no early stopping on a validation fold).",
)
def cv(
    task: str,
    data: Path,
    out: Path | None,
    folds: int,
    epochs: int,
    seed: int,
    variants: tuple[str, ...],
    limit: int | None,
    train_folds: int | None,
    no_validation: bool,
) -> None:
    """Patient-level cross-validation of TASK: out-of-fold scores for every patient (oof.npz),
    then the pooled and per-patient table, calibration and review band (cv-report.json)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.cv import run_cv
    from patchscan_train.cv_report import analyse, training_fold_count

    out = out or Path("runs") / f"{task}-cv-{dt.datetime.now():%Y%m%d-%H%M%S}"
    try:
        training_fold_count(folds, not no_validation, train_folds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--train-folds") from None
    recipes = variants or (*VARIANTS, *TEST_TIME)
    oof = run_cv(
        task, data, out, folds, epochs, seed, recipes, limit, train_folds, not no_validation
    )
    click.echo(json.dumps(analyse(oof, task), indent=2)[:4000])


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option("--data", type=FOLDER, required=True)
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The shipped ONNX file to calibrate in place (its card beside it is updated).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The run's split seed.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where the scores are kept [runs/TASK-calibrate].",
)
def calibrate(task: str, data: Path, model_path: Path, seed: int, out: Path | None) -> None:
    """Fit calibration and the review band of a shipped model on its validation split, write
    them into its metadata and card, and judge them on the test split."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.calibrate import calibrate_shipped
    from patchscan_train.modelcard import write_calibration_section

    out = out or Path("runs") / f"{task}-calibrate"
    figures = calibrate_shipped(task, data, model_path, out, seed)
    write_calibration_section(model_path.with_suffix(".md"), figures)
    click.echo(json.dumps({k: v for k, v in figures.items()}, indent=2, default=float)[:3000])


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option("--data", type=FOLDER, required=True)
@click.option(
    "--cv",
    "cv_folder",
    type=FOLDER,
    required=True,
    help="A finished `cv` run folder (cv.json, cv-report.json).",
)
@click.option("--variant", default="plain", show_default=True, help="The recipe to ship.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [runs/TASK-final-DATE].")
def final(task: str, data: Path, cv_folder: Path, variant: str, out: Path | None) -> None:
    """Train the cross-validated VARIANT of TASK on every patient and export it with the
    calibration, thresholds and review bands its CV chose, and a card led by the CV table."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.final import NotShippable, train_final

    out = out or Path("runs") / f"{task}-final-{dt.datetime.now():%Y%m%d-%H%M%S}"
    try:
        click.echo(json.dumps(train_final(task, data, cv_folder, variant, out), indent=2))
    except NotShippable as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@cv_runs("Two or more finished `cv` runs of VARIANT on the same folds: one per member.")
@click.option("--variant", default="plain", show_default=True, help="The recipe to average.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The run folder.")
def ensemble(task: str, cv_folders: tuple[Path, ...], variant: str, out: Path) -> None:
    """The CV of an ensemble of VARIANT: the mean of the runs' out-of-fold scores, judged like a
    recipe (cv-report.json; the variant VARIANT-xN, which `final` then trains N members of)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.cv import merge_runs
    from patchscan_train.cv_report import analyse

    try:
        oof = merge_runs(list(cv_folders), variant, out)
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"cannot merge the runs: {exc}") from None
    report = analyse(oof, task)
    click.echo(
        json.dumps(
            {
                k: v["nested"]["pooled"]
                for k, v in report.items()
                if isinstance(v, dict) and "nested" in v
            },
            indent=2,
        )
    )


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option(
    "--run",
    "run_folder",
    type=FOLDER,
    required=True,
    help="A finished `final` run folder (TASK.onnx, metrics.json).",
)
@cv_runs(
    "`cv` run folders on the same folds: the first is the shipped recipe's, the others add "
    "their recipes as ablation rows."
)
@click.option("--variant", default="plain", show_default=True, help="The recipe that ships.")
def card(task: str, run_folder: Path, cv_folders: tuple[Path, ...], variant: str) -> None:
    """Write a final run's model card again, with the recipes of several CV runs side by side
    (e.g. a later run of the ablation recipes on the same folds), without retraining."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.final import rewrite_card

    try:
        path = rewrite_card(task, run_folder, list(cv_folders), variant)
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"{run_folder}: cannot write the card: {exc}") from None
    click.echo(str(path))


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option(
    "--oof",
    "oof_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Out-of-fold scores: a `cv` run's oof.npz (or a copy such as docs/cv/idc/ensemble-oof.npz "
    "beside its ensemble-cv.json).",
)
@click.option("--variant", default="plain", show_default=True, help="The recipe to judge.")
@click.option(
    "--slides",
    help="Comma-separated patients to draw as tissue | annotation | score (needs --figure).",
)
@click.option("--figure", type=click.Path(dir_okay=False, path_type=Path), help="The PNG to write.")
def boundary(
    task: str, oof_path: Path, variant: str, slides: str | None, figure: Path | None
) -> None:
    """How much of the CV's error lies on the annotation's outline: the nested figures with the
    patches next to a patch of the other label left out, errors by distance, and (with --slides
    and --figure) slides drawn as tissue | annotation | score."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from patchscan_train.boundary import boundary_table, markdown, slide_maps
    from patchscan_train.tasks import TASKS as TASK_OF

    spec = TASK_OF[task]
    if bool(slides) != bool(figure):
        raise click.UsageError("--slides and --figure go together")
    try:
        click.echo(markdown(boundary_table(oof_path, spec, variant)))
        if slides and figure:
            slide_maps(oof_path, spec, variant, slides.split(","), figure)
            click.echo(str(figure))
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"{oof_path}: {exc}") from None
