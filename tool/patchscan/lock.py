"""One writer per outputs: a run holds an exclusive lock on its outputs for its whole life.

Two runs writing the same CSV, JSON, report or result store would both exit 0 while one
silently lost the other's rows. Each output `x.csv` is covered by the lock `x.patchscan.lock`
beside it (the store's own name, with the lock's suffix): one lock for the usual `r.csv`,
`r.json`, `r.html`, and a run that shares any one output with another meets its lock. A second
run is refused at once with the holder's pid and command, which the holder writes into the file.

The lock is the operating system's (flock on POSIX, msvcrt.locking on Windows), held by an open
file: it ends with its process, however that ends, so a `kill -9` leaves no stale lock to
delete. The file itself stays; an empty one is simply free.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from patchscan.errors import UsageError

SUFFIX = ".patchscan.lock"
_WINDOWS_BYTE = 1 << 30  # Windows locks bytes, and a locked byte cannot be read: lock one far out


def lock_paths(outputs: tuple[Path, ...]) -> tuple[Path, ...]:
    """The locks covering `outputs`, in a fixed order."""
    return tuple(sorted({p.with_name(p.stem + SUFFIX) for p in outputs}))


@contextlib.contextmanager
def hold(outputs: tuple[Path, ...], command_line: str) -> Iterator[None]:
    """Hold every lock covering `outputs` until the block ends; UsageError if another run does."""
    with contextlib.ExitStack() as held:
        for path in lock_paths(outputs):
            held.enter_context(_held(path, outputs, command_line))
        yield


@contextlib.contextmanager
def _held(path: Path, outputs: tuple[Path, ...], command_line: str) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        if not _try_lock(fd):
            covered = next(p for p in outputs if p.with_name(p.stem + SUFFIX) == path)
            raise UsageError(
                f"{covered}: in use by another patchscan run ({_holder(path)}); "
                "stop it or give other outputs"
            )
        _write(fd, f"{os.getpid()} {' '.join(command_line.split())}")
        try:
            yield
        finally:
            _write(fd, "")
            _unlock(fd)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    """What the holder wrote: 'pid N: command' (empty for an instant after it took the lock)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"pid {pid}: {command}" if pid.isdigit() else "pid unknown"


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8"))


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
