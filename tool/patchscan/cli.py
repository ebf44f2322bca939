"""The command line: parse, call the scan, map errors to exit codes. Nothing else lives here.

Exit codes: 0 all classified, 1 finished with per-file failures, 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

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


def _model_and_outputs(command: Callable[..., None]) -> Callable[..., None]:
    """--model, --csv, --json, --report, --threshold and --review-error: the same for scan and
    watch."""
    options = [
        click.option(
            "--model",
            default="idc",
            show_default=True,
            metavar="idc|skin|FILE.onnx",
            help="A bundled model, or an .onnx file with patchscan metadata.",
        ),
        _output(
            "csv", "CSV, one row per image ('-' or no output option at all: stdout, scan only)."
        ),
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
@_model_and_outputs
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    help="Images per onnxruntime call [default: 160,000 pixels' worth: 64 patches of 50x50, "
    "6 photos of 160x160].",
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
        batch_size=batch_size,
        force=force,
    )
    if to_stdout and settings.outputs.paths:
        raise click.UsageError("--csv - (stdout) cannot be combined with --json or --report")
    command = shlex.join(["patchscan", *sys.argv[1:]])
    with _progress(quiet) as on_result:
        outcome = _run_or_fail(lambda: run_scan(settings, command, on_result))
    if not quiet:
        counts = ", ".join(f"{n:,} {label}" for label, n in outcome.counts.items())
        log.info(
            "%s files: %s, %s errors",
            f"{outcome.classified + outcome.errors:,}",
            counts,
            f"{outcome.errors:,}",
        )
        for output in settings.outputs.paths:
            log.info(
                "%s %s", "unchanged since the last scan:" if outcome.unchanged else "wrote", output
            )
    sys.exit(outcome.exit_code)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@_model_and_outputs
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
    from patchscan.gui import main as open_window

    open_window()


@main.command()
def models() -> None:
    """List the bundled models with what their metadata says."""
    from patchscan.model import bundled_models, read_info

    try:
        for name, path in bundled_models().items():
            info = read_info(path)
            m = info.metrics
            click.echo(
                f"{name}\t{info.version}\t{info.classes[0]} / {info.classes[1]}\t"
                f"input {info.input_size[0]}x{info.input_size[1]}{_views_note(info)}\t"
                f"threshold {info.threshold:g}"
                f"{_context_note(info)}\t"
                f"test balanced acc. {m.get('balanced_accuracy', '?')}, ROC AUC {m.get('roc_auc', '?')}\t"
                f"{info.description}"
            )
    except PatchscanError as exc:
        _fail(exc)


def _views_note(info: ModelInfo) -> str:
    return "" if info.views == 1 else f" (mean of {info.views} flips/rotations)"


def _context_note(info: ModelInfo) -> str:
    if info.context is None:
        return ""
    m = info.metrics.get("slide_context", {})
    return (
        f" (slide context {info.context.threshold:g}: test balanced acc. "
        f"{m.get('balanced_accuracy', '?')}, ROC AUC {m.get('roc_auc', '?')}, F1 {m.get('f1', '?')})"
    )


class _progress:
    """A rich progress line on stderr (only for a terminal): files done, errors so far."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.progress: Any = None

    def __enter__(self) -> Callable[[Any], None]:
        if not self.enabled:
            return lambda result: None
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.completed:,} files · {task.fields[errors]} errors"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.progress.start()
        task = self.progress.add_task("scan", total=None, errors=0)
        errors = 0

        def on_result(result: Any) -> None:
            nonlocal errors
            errors += not result.ok
            self.progress.update(task, advance=1, errors=errors)

        return on_result

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def entry() -> None:
    """Console-script and frozen-binary entry point; the double-clicked app opens its window."""
    multiprocessing.freeze_support()
    if getattr(sys, "frozen", False) and len(sys.argv) == 1:
        sys.argv.append("window")
    main()
