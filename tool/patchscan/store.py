"""The result store: an SQLite file next to the outputs that remembers every image's result.

A row is keyed by absolute path and is current while the file's (size, mtime_ns) and the model's sha256
are unchanged, so a rescan re-reads nothing that it already knows and a changed file or model is
redone. `patchscan scan` and `patchscan watch` share it, one run at a time (lock.py); SQLite's
journal makes every committed batch survive a crash or `kill -9`, and an uncommitted one is simply
redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchscan.discover import Candidate, stamp_of
from patchscan.errors import UsageError
from patchscan.model import ModelInfo
from patchscan.naming import parse_name
from patchscan.results import TILE, Labels, Result

if TYPE_CHECKING:
    import numpy as np

SUFFIX = ".patchscan.db"
_SCHEMA_VERSION = 2  # 2: results.colour (a sampled patch's share of its slide's colours)
Tally = dict[str, Any]  # a scan's counts per label, errors and review calls: its one-line summary
_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (sha256 TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    model TEXT NOT NULL,
    probability REAL,
    error TEXT NOT NULL,
    tile BLOB,
    colour TEXT
);
CREATE TABLE IF NOT EXISTS last_scan (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    fingerprint TEXT NOT NULL,
    outputs TEXT NOT NULL,
    tally TEXT NOT NULL
);
"""


# A file name that is not UTF-8 reaches Python as lone surrogates (U+DC80-U+DCFF, PEP 383),
# which SQLite cannot store as text. Keys carry each as a plane-16 private-use character
# instead, one for one: prefixes still select a folder's files and the name comes back exactly.
_TO_KEY = {0xDC00 + byte: 0x10FF00 + byte for byte in range(0x80, 0x100)}
_FROM_KEY = {key: char for char, key in _TO_KEY.items()}


def _key(path: str | Path) -> str:
    """The store's key for a file: its absolute path, storable as SQLite text."""
    return os.path.abspath(path).translate(_TO_KEY)


def _path(key: str) -> str:
    return key.translate(_FROM_KEY)


def store_path(outputs: tuple[Path, ...]) -> Path:
    """`results.csv` → `results.patchscan.db`, beside the first output."""
    return outputs[0].with_name(outputs[0].stem + SUFFIX)


def store_files(path: Path) -> frozenset[Path]:
    """The store and SQLite's companion files, which discovery must never take for images."""
    return frozenset(
        path.with_name(path.name + extra) for extra in ("", "-journal", "-wal", "-shm")
    )


class ResultStore:
    def __init__(self, path: Path, model_sha256: str) -> None:
        self.path = path
        self.model = model_sha256
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")  # a reader never blocks the writer
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"unknown schema version {version}")
        self._db.executescript(_SCHEMA)
        if version == 1:  # a store from before colour sampling: its rows simply have none
            self._db.execute("ALTER TABLE results ADD COLUMN colour TEXT")
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._added: list[tuple[object, ...]] = []
        self._index: dict[str, tuple[Any, ...]] | None = None

    def close(self) -> None:
        self.commit()
        self._db.close()

    def model_info(self) -> ModelInfo | None:
        """The model's metadata as last read, so a fully known rescan never starts onnxruntime."""
        row = self._db.execute("SELECT info FROM models WHERE sha256=?", (self.model,)).fetchone()
        return ModelInfo.from_metadata(json.loads(row[0])) if row else None

    def remember_model(self, info: ModelInfo) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO models VALUES (?, ?)",
            (self.model, json.dumps(info.to_metadata())),
        )
        self._db.commit()

    def known(self, image: Candidate, labels: Labels, tiles: bool) -> Result | None:
        """The stored result for `image` if it is still current, labelled by `labels`.

        With `tiles` (a report will draw the slide), a patch stored without its thumbnail (by a
        scan that wrote no report) is not known: it is read again for the thumbnail.
        """
        if image.stamp is None:
            return None
        if self._index is None:
            self._index = self._load_index()
        row = self._index.get(_key(image.path))
        if row is None or row[:2] != image.stamp:
            return None
        result = _result(image.path, row[2:], labels, image.stamp)
        if tiles and result.ok and result.tile is None and result.name.x is not None:
            return None
        return result

    def _load_index(self) -> dict[str, tuple[Any, ...]]:
        """Every current row of this model in one query: a rescan of 100k files is one read."""
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, probability, error, tile, colour FROM results "
            "WHERE model=?",
            (self.model,),
        )
        return {path: tuple(rest) for path, *rest in rows}

    def add(self, result: Result) -> None:
        """Remember `result`; it is durable after the next commit()."""
        if result.stamp is None:
            return  # a file that could not be stat'ed has nothing to key on
        tile = None if result.tile is None else result.tile.tobytes()
        self._added.append(
            (
                _key(result.path),
                *result.stamp,
                self.model,
                result.probability,
                result.error,
                tile,
                None if result.colour is None else json.dumps(result.colour),
            )
        )

    def commit(self) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._added
        )
        self._db.commit()
        self._added.clear()

    def has_results(self) -> bool:
        """Whether anything was ever classified with this model (if not, skip every lookup)."""
        query = "SELECT 1 FROM results WHERE model=? LIMIT 1"
        return self._db.execute(query, (self.model,)).fetchone() is not None

    def stamp(self, path: str) -> tuple[int, int] | None:
        """The (size, mtime_ns) a current result was made from, if any."""
        row = self._db.execute(
            "SELECT size, mtime_ns FROM results WHERE path=? AND model=?",
            (_key(path), self.model),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def remember_scan(self, fingerprint: str, outputs: tuple[Path, ...], tally: Tally) -> None:
        """Record a complete scan: what it was a scan of, and its outputs' stamps as written."""
        self._db.execute(
            "INSERT OR REPLACE INTO last_scan VALUES (0, ?, ?, ?)",
            (fingerprint, json.dumps(_stamps(outputs)), json.dumps(tally)),
        )
        self._db.commit()

    def last_scan(self, outputs: tuple[Path, ...]) -> tuple[str, Tally] | None:
        """The last complete scan's fingerprint and tally, if its outputs are still as it left them
        (same files, same size and mtime): else None, and the outputs must be written again."""
        row = self._db.execute("SELECT fingerprint, outputs, tally FROM last_scan").fetchone()
        if row is None:
            return None
        if json.loads(row[1]) != _stamps(outputs):
            return None
        return row[0], json.loads(row[2])

    def current(self, labels: Labels, under: Path) -> Iterator[Result]:
        """Every result made with this model for files under `under`, in path order."""
        prefix = _key(under).rstrip("/\\")
        rows = self._db.execute(
            "SELECT path, probability, error, tile, colour, size, mtime_ns FROM results "
            "WHERE model=? AND (path=? OR substr(path, 1, ?) IN (?, ?)) ORDER BY path",
            (self.model, prefix, len(prefix) + 1, prefix + "/", prefix + "\\"),
        )
        for path, *row, size, mtime_ns in rows:
            yield _result(_path(path), tuple(row), labels, (size, mtime_ns))


def _stamps(outputs: tuple[Path, ...]) -> list[list[object]]:
    """Each output's absolute path with its (size, mtime_ns), as JSON-ready lists."""
    return [[os.path.abspath(p), *(stamp_of(p) or ())] for p in outputs]


def _result(
    path: str,
    row: tuple[Any, ...],  # probability, error, tile, colour
    labels: Labels,
    stamp: tuple[int, int],
) -> Result:
    probability, error, tile, colour = row
    name = parse_name(path, labels.classes)
    if probability is None:
        return Result(path, name, error=error or "unknown error", stamp=stamp, known=True)
    pixels = None if tile is None else _tile_pixels(tile)
    label, review = labels.of_probability(probability), labels.review_probability(probability)
    return Result(
        path,
        name,
        probability,
        label,
        tile=pixels,
        stamp=stamp,
        known=True,
        review=review,
        colour=None if colour is None else tuple(json.loads(colour)),
    )


def _tile_pixels(blob: bytes) -> np.ndarray:
    import numpy as np  # here: the unchanged-folder check opens the store without numpy

    return np.frombuffer(blob, np.uint8).reshape(TILE, TILE, 3)


@contextlib.contextmanager
def open_store(path: Path, model_sha256: str) -> Iterator[ResultStore]:
    try:
        store = ResultStore(path, model_sha256)
    except sqlite3.OperationalError as exc:  # a read-only folder, a full disk
        raise UsageError(f"cannot write {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a patchscan result store ({exc}); delete it") from None
    try:
        yield store
    finally:
        store.close()
