"""Write-then-rename, so a reader never sees a half-written output, even after a crash."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any threads
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would have given; mkstemp's 0600 hides shared reports


# How every text output (CSV, JSON, HTML) is encoded. A file name that is not UTF-8 (Latin-1
# bytes from an old share) reaches Python as lone surrogates (PEP 383), which UTF-8 cannot hold:
# such a byte is written as its escape (caf\udce9.png) instead of ending the run.
TEXT_ENCODING = {"encoding": "utf-8", "errors": "backslashreplace"}

_TEMP_SUFFIX = ".tmp"
_RANDOM_PART = "[a-z0-9_]{8}"  # what tempfile.mkstemp puts between prefix and suffix


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: object) -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success it replaces `path`, on failure it is removed."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=_TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not our temp name
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, mode, **kwargs) as handle:  # type: ignore[call-overload]
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_open(path, "w", newline="", **TEXT_ENCODING) as handle:
        handle.write(text)


def remove_stale_temps(paths: tuple[Path, ...]) -> None:
    """Remove the temp files a killed run (`kill -9`, a power cut) left beside `paths`: nothing
    else ever would. Only for a run that holds the lock on `paths` (lock.py): a live run's temp
    file looks just the same. Matched exactly (`.r.csv.` + mkstemp's 8 characters + `.tmp`),
    so that `.r.csv.bak.XXXXXXXX.tmp`, another output's, stays."""
    for folder in {path.parent for path in paths}:
        names = [path.name for path in paths if path.parent == folder]
        prefixes = "|".join(re.escape(_temp_prefix(folder / name)) for name in names)
        pattern = re.compile(f"(?:{prefixes}){_RANDOM_PART}{re.escape(_TEMP_SUFFIX)}")
        _remove_matching(folder, pattern)


def _remove_matching(folder: Path, pattern: re.Pattern[str]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if pattern.fullmatch(entry.name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
