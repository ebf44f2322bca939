"""The command line: parse, call the scan, map errors to exit codes. Nothing else lives here.

Exit codes: 0 all classified, 1 finished with per-file failures, 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from patchscan import __version__
from patchscan.errors import PatchscanError

if TYPE_CHECKING:
    from patchscan.model import ModelInfo
    from patchscan.scan import ScanOutcome

log = logging.getLogger("patchscan")
T = TypeVar("T")


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("patchscan: %(message)s"))
    root = logging.getLogger("patchscan")
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if quiet else logging.INFO)
    root.propagate = False


def _fail(exc: PatchscanError) -> NoReturn:
    click.echo(f"patchscan: error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="patchscan")
def main() -> None:
    """Classify folders of slide patches or skin-lesion images on the CPU."""


def _model_and_outputs(csv_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--model, --csv, --json, --report, --threshold, --review-error and --workers: the same
    for scan and watch but for what --csv says."""
    return lambda command: _with_options(command, csv_help)


def _with_options(command: Callable[..., None], csv_help: str) -> Callable[..., None]:
    options = [
        click.option(
            "--model",
            "-m",
            default="idc",
            show_default=True,
            metavar="idc|skin|FILE.onnx",
            help="A bundled model (any case), or an .onnx file with patchscan metadata.",
        ),
        _output("csv", csv_help),
        _output("json", "JSON summary: counts, groups, errors, metrics, provenance."),
        _output("report", "Self-contained HTML report."),
        click.option(
            "--threshold",
            type=click.FloatRange(0, 1),
            metavar="P",
            help="Label positive when P (or, for a slide's patches, the slide-context score) "
            ">= this [the model's own, chosen on held-out data].",
        ),
        click.option(
            "--review-error",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            metavar="RATE",
            help="Mark a call 'needs review' unless it is in the range where the model's error "
            "rate stayed at or under RATE on held-out data [the model's own, 0.05].",
        ),
        click.option(
            "--workers",
            "-j",
            type=click.IntRange(1, 256),
            metavar="N",
            help="Worker processes [the CPUs this process may use].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _output(kind: str, help: str) -> Callable[..., Any]:
    """--csv / --json / --report FILE, passed to the command as csv_path / json_path / ..."""
    return click.option(
        f"--{kind}", f"{kind}_path", type=click.Path(dir_okay=False, path_type=Path), help=help
    )


def _seconds(name: str, help: str, default: float | None = None) -> Callable[..., Any]:
    return click.option(
        name,
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        show_default=default is not None,
        metavar="SECONDS",
        help=help,
    )


def _run_or_fail(work: Callable[[], T]) -> T:
    """Map the errors a user can act on to one line on stderr and exit code 2."""
    try:
        return work()
    except PatchscanError as exc:
        _fail(exc)
    except OSError as exc:  # an output that cannot be written: disk full, permissions
        _fail(PatchscanError(f"cannot write {exc.filename or 'output'}: {exc.strerror or exc}"))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_and_outputs("CSV, one row per image ('-', or no output option at all: stdout).")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    metavar="N",
    help="Images per worker task [640,000 pixels' worth: 256 patches of 50x50, 3 skin "
    "photos in 8 views].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Re-classify every file, even those the result store beside the outputs already knows.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary on stderr.")
def scan(
    paths: tuple[Path, ...],
    model: str,
    csv_path: Path | None,
    json_path: Path | None,
    report_path: Path | None,
    threshold: float | None,
    review_error: float | None,
    workers: int | None,
    batch_size: int | None,
    force: bool,
    quiet: bool,
) -> None:
    """Classify every image under PATHS (folders are searched recursively)."""
    from patchscan.scan import ScanSettings, run_scan

    _setup_logging(quiet)
    to_stdout = csv_path == Path("-")
    settings = ScanSettings(
        paths=paths,
        model=model,
        csv=None if to_stdout else csv_path,
        json=json_path,
        report=report_path,
        threshold=threshold,
        review_error=review_error,
        workers=workers or 0,
        batch_size=batch_size,
        force=force,
    )
    if to_stdout and settings.outputs.paths:
        raise click.UsageError("--csv - (stdout) cannot be combined with --json or --report")
    command = shlex.join(["patchscan", *sys.argv[1:]])
    with _progress(quiet, paths) as on_result:
        outcome = _run_or_fail(lambda: run_scan(settings, command, on_result))
    if not quiet:
        log.info("%s", _summary_line(outcome))
        for output in settings.outputs.paths:
            log.info(
                "%s %s", "unchanged since the last scan:" if outcome.unchanged else "wrote", output
            )
    sys.exit(outcome.exit_code)


def _summary_line(outcome: ScanOutcome) -> str:
    """'407 files: 212 non-IDC, 195 IDC, 0 errors', with the calls to review when the model has
    a review band: what a person reads first, before opening the report."""
    parts = [f"{n:,} {label}" for label, n in outcome.counts.items()]
    if outcome.review is not None:
        parts.append(f"{outcome.review:,} need review")
    parts.append(f"{outcome.errors:,} errors")
    return f"{outcome.classified + outcome.errors:,} files: {', '.join(parts)}"


@main.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@_model_and_outputs("CSV, one row per image, kept up to date as files land.")
@_seconds(
    "--settle", "Classify a file once its size and mtime have not changed for this long.", 1.0
)
@_seconds("--poll", "Poll the folder every SECONDS instead of native events (network shares).")
@_seconds("--rescan", "Walk the whole folder this often, for anything the events missed.", 60.0)
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
def watch(
    folder: Path,
    model: str,
    csv_path: Path | None,
    json_path: Path | None,
    report_path: Path | None,
    threshold: float | None,
    review_error: float | None,
    workers: int | None,
    settle: float,
    poll: float | None,
    rescan: float,
    quiet: bool,
) -> None:
    """Classify everything in FOLDER, then every image that lands in it, until Ctrl-C.

    State is kept in an SQLite file beside the first output, so a restart (even after a crash)
    neither redoes nor misses a file. Ctrl-C or SIGTERM finishes the batch, saves, exits 0.
    """
    import signal
    import threading

    from patchscan.watch import Watcher, WatchSettings

    _setup_logging(quiet)
    settings = WatchSettings(
        folder=folder,
        model=model,
        csv=csv_path,
        json=json_path,
        report=report_path,
        threshold=threshold,
        review_error=review_error,
        workers=workers or 0,
        settle=settle,
        poll=poll,
        rescan=rescan,
    )
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, lambda *_: stop.set()) for signum in signals]
    command = shlex.join(["patchscan", *sys.argv[1:]])
    try:
        classified = _run_or_fail(lambda: Watcher(settings, stop, command).run())
    finally:
        for signum, handler in zip(signals, previous, strict=True):
            signal.signal(signum, handler)
    log.info("stopped; %s files classified in this session", f"{classified:,}")


@main.command()
def window() -> None:
    """Open the desktop window (what the standalone app does when started with no arguments)."""
    try:
        from patchscan.gui import main as open_window

        open_window()
    except ImportError as exc:  # a Python built without Tk
        _fail(PatchscanError(f"the window needs Tk, which this Python lacks ({exc})"))
    except Exception as exc:  # TclError: no display, or a display that refuses us
        if type(exc).__name__ != "TclError":
            raise
        _fail(PatchscanError(f"cannot open the window: {exc} (is there a display?)"))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The models' metadata as JSON, for programs.")
def models(as_json: bool) -> None:
    """List the bundled models: what they classify, their input, threshold and held-out figures."""
    from patchscan.model import bundled_models, read_info

    try:
        infos = {name: read_info(path) for name, path in bundled_models().items()}
    except PatchscanError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({n: i.to_metadata() for n, i in infos.items()}, indent=2))
        return
    if not _stdout_is_terminal():
        for name, info in infos.items():  # one line per model, tab-separated: for cut and grep
            click.echo("\t".join(cell.replace("\n", "; ") for cell in _model_row(name, info)))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("model", "classifies", "input", "threshold", "held-out figures", box=None)
    for name, info in infos.items():
        table.add_row(*(escape(cell) for cell in _model_row(name, info)))
    Console().print(table)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _model_row(name: str, info: ModelInfo) -> tuple[str, str, str, str, str]:
    """A model's cells, in the table's column order: name, classes, input, threshold, figures."""
    return (
        name,
        f"{info.classes[1]} vs {info.classes[0]}\n{info.description}",
        f"{info.input_size[0]}x{info.input_size[1]}{_views_note(info)}",
        f"{info.threshold:.3g}" + _context_note(info),
        _figures(info),
    )


def _views_note(info: ModelInfo) -> str:
    return "" if info.views == 1 else f"\n{info.views} views averaged"


def _context_note(info: ModelInfo) -> str:
    return "" if info.context is None else f"\nslide context {info.context.threshold:.3g}"


def _figures(info: ModelInfo) -> str:
    """The headline held-out figures: with slide context where the model has it."""
    _, m = info.scan_figures()
    parts = [
        f"{label} {m[key]:.3f}"
        for key, label in (("balanced_accuracy", "bal. acc."), ("roc_auc", "ROC AUC"), ("f1", "F1"))
        if isinstance(m.get(key), (int, float))
    ]
    estimate = info.metrics.get("estimate")
    return ", ".join(parts) + (f"\n{estimate}" if estimate else "")


class _progress:
    """A progress bar on stderr, only for a terminal: files done of the total (counted first by a
    walk that only lists the folders), percentage, rate, time left, and errors so far."""

    def __init__(self, quiet: bool, paths: tuple[Path, ...] = ()) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.paths = paths
        self.progress: Any = None

    def __enter__(self) -> Callable[[Any], None]:
        if not self.enabled:
            return lambda result: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} files/s · {task.fields[errors]:,} errors"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.progress.start()
        task = self.progress.add_task("scan", total=count_images(self.paths), errors=0, rate="–")
        errors = 0

        def on_result(result: Any) -> None:
            nonlocal errors
            errors += not result.ok
            speed = self.progress.tasks[0].speed
            rate = "–" if speed is None else f"{speed:,.0f}"
            self.progress.update(task, advance=1, errors=errors, rate=rate)

        return on_result

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def count_images(paths: tuple[Path, ...]) -> int | None:
    """How many images a scan of `paths` will meet (one listing of each folder, no file opened);
    None when there are none to count."""
    from patchscan.discover import walk

    return sum(1 for _, skip, _ in walk(paths) if not skip) or None


def entry() -> None:
    """Console-script and frozen-binary entry point; the double-clicked app opens its window."""
    multiprocessing.freeze_support()
    if getattr(sys, "frozen", False) and len(sys.argv) == 1:
        sys.argv.append("window")
    main()
