"""The vocabulary every room shares: a file's Result, a worker's answer, and the label rule.

Record types live here, not in the engine, so that the store, the report writers and the window
can speak of results without importing the pipeline; and `Labels` is the one place that decides
what a probability or a slide-context score is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from patchscan.discover import Stamp
from patchscan.naming import NameInfo

if TYPE_CHECKING:
    import numpy as np

    from patchscan.model import ModelInfo

TILE = 8  # px per patch in the tissue mosaic of the report


@dataclass(frozen=True)
class Labels:
    """The label rule of one run: the model's classes and the thresholds that choose between them.

    A patch's own probability is labelled at `threshold`; a slide-context score (context.py) at
    `context_threshold`. A score equal to its threshold is positive. The user's `--threshold`
    replaces both, so one number moves every call the run makes.
    """

    classes: tuple[str, str]  # (negative, positive)
    threshold: float
    context_threshold: float | None = None  # None: the model has no slide context

    @classmethod
    def of(cls, info: ModelInfo, asked: float | None = None) -> Labels:
        """The rule for `info`'s model, at the threshold the user `asked` for (None: the model's)."""
        threshold = info.threshold if asked is None else asked
        context = None
        if info.context is not None:
            context = info.context.threshold if asked is None else asked
        return cls(info.classes, threshold, context)

    @property
    def negative(self) -> str:
        return self.classes[0]

    @property
    def positive(self) -> str:
        return self.classes[1]

    def of_probability(self, probability: float) -> str:
        return self.classes[1] if probability >= self.threshold else self.classes[0]

    def of_context(self, score: float) -> str:
        if self.context_threshold is None:
            raise ValueError("this model has no slide context")
        return self.classes[1] if score >= self.context_threshold else self.classes[0]


# Not frozen, though nothing changes a Result once made: a frozen dataclass takes ~3 us to build
# instead of ~0.5, and the main process builds one or two per file.
@dataclass(slots=True)
class Result:
    """One file's outcome, whatever happened to it: classified, failed, or known from the store."""

    path: str  # as discovery found it (see Candidate)
    name: NameInfo
    probability: float | None = None
    label: str = ""
    error: str = ""
    tile: np.ndarray | None = None  # a TILE x TILE thumbnail, only for patches with x, y
    stamp: Stamp | None = None  # the file's (size, mtime_ns) when it was read
    known: bool = False  # came from the result store, not from the model just now
    context: float | None = None  # slide-context score (context.py), which then set the label

    @property
    def ok(self) -> bool:
        return not self.error


class Classified(NamedTuple):
    """A worker's answer for one image: its probability, or why there is none. (A tuple: one is
    built and pickled per file.)"""

    name: NameInfo
    probability: float | None
    tile: np.ndarray | None
    error: str
