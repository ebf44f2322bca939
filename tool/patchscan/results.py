"""The vocabulary every room shares: a file's Result, a worker's answer, and the label rule.

Record types live here, not in the engine, so that the store, the report writers and the window
can speak of results without importing the pipeline; and `Labels` is the one place that decides
what a probability or a slide-context score is called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from patchscan.discover import Stamp
from patchscan.errors import ModelError
from patchscan.naming import NameInfo

if TYPE_CHECKING:
    import numpy as np

    from patchscan.model import ModelInfo

TILE = 8  # px per patch in the tissue mosaic of the report


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of a score: P = sigmoid(a * logit(score) + b), fitted by the trainer on
    held-out patients so that a probability of 0.8 is right about 80% of the time."""

    a: float
    b: float

    def __call__(self, score: float) -> float:
        p = min(max(score, 1e-6), 1 - 1e-6)
        z = self.a * math.log(p / (1 - p)) + self.b
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


@dataclass(frozen=True)
class ReviewBand:
    """Scores in [low, high) are the model's doubtful calls: "needs review". Outside it, the
    calibration set's error rate was at or under the band's target (the trainer's guarantee)."""

    low: float
    high: float

    def __contains__(self, score: float) -> bool:
        return self.low <= score < self.high


@dataclass(frozen=True)
class Labels:
    """The label rule of one run: how a model's output becomes a call, in one place.

    A patch's probability is first calibrated (the model's metadata says how, where the trainer
    fitted it), then labelled at `threshold`; a slide-context score (context.py, the weighted
    mean of calibrated probabilities) is calibrated and labelled at `context_threshold`. A score
    equal to its threshold is positive. The user's `--threshold` replaces both thresholds, so
    one number moves every call the run makes.

    A score inside its review band is a doubtful call: its label stays the decision at the
    threshold, and it is marked "needs review".
    """

    classes: tuple[str, str]  # (negative, positive)
    threshold: float
    context_threshold: float | None = None  # None: the model has no slide context
    calibration: Calibration | None = None  # of a patch's probability
    context_calibration: Calibration | None = None  # of a slide-context score
    review: ReviewBand | None = None  # on the calibrated probability
    context_review: ReviewBand | None = None  # on the calibrated slide-context score
    review_target: float | None = None  # the error rate the bands keep decided calls under

    @classmethod
    def of(
        cls, info: ModelInfo, asked: float | None = None, review_error: float | None = None
    ) -> Labels:
        """The rule for `info`'s model at the threshold the user `asked` for (None: the model's)
        and the review band for the error rate `review_error` (None: the model's default)."""
        threshold = info.threshold if asked is None else asked
        context = None
        if info.context is not None:
            context = info.context.threshold if asked is None else asked
        try:
            calibration = info.calibration or {}
            bands = review_bands(info.review, review_error)
            return cls(
                info.classes,
                threshold,
                context,
                _calibration(calibration.get("probability")),
                _calibration(calibration.get("context")),
                _around(bands.get("probability"), threshold),
                _around(bands.get("context"), context),
                bands.get("target"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"model {info.name}: calibration or review metadata invalid ({exc})"
            ) from None

    @property
    def negative(self) -> str:
        return self.classes[0]

    @property
    def positive(self) -> str:
        return self.classes[1]

    def calibrated(self, probability: float) -> float:
        return probability if self.calibration is None else self.calibration(probability)

    def calibrated_context(self, score: float) -> float:
        return score if self.context_calibration is None else self.context_calibration(score)

    def of_probability(self, probability: float) -> str:
        """The label of a (calibrated) probability."""
        return self.classes[1] if probability >= self.threshold else self.classes[0]

    def of_context(self, score: float) -> str:
        """The label of a (calibrated) slide-context score."""
        if self.context_threshold is None:
            raise ValueError("this model has no slide context")
        return self.classes[1] if score >= self.context_threshold else self.classes[0]

    def threshold_of(self, result: Result) -> float:
        """The threshold `result`'s label was decided at: the slide-context one for a patch
        labelled by its context score, else the patch's own."""
        if result.context is not None and self.context_threshold is not None:
            return self.context_threshold
        return self.threshold

    @property
    def has_review(self) -> bool:
        """Whether the model has a review band at all (for the patch alone or slide context)."""
        return self.review is not None or self.context_review is not None

    @property
    def positioned_threshold(self) -> float:
        """The threshold a patch with a position on its slide is labelled at: the slide-context
        one for a model with slide context (Labels.of gives one exactly then), else its own."""
        return self.threshold if self.context_threshold is None else self.context_threshold

    def review_probability(self, probability: float) -> bool:
        return self.review is not None and probability in self.review

    def review_context(self, score: float) -> bool:
        return self.context_review is not None and score in self.context_review


def review_bands(raw: dict[str, Any] | None, target: float | None) -> dict[str, Any]:
    """The bands for the error-rate `target` from a model's review metadata: the entry of the
    largest tabulated target at or under it (never a looser band than asked), or the model's
    default target's when None. Returns {"target", "probability", "context"}; empty without."""
    if not raw:
        return {}
    wanted = float(raw["target"]) if target is None else target
    out: dict[str, Any] = {}
    for kind, table in raw["bands"].items():
        rows = sorted((float(t), float(low), float(high)) for t, low, high in table)
        fitting = [row for row in rows if row[0] <= wanted + 1e-12] or rows[:1]
        out["target"], low, high = fitting[-1]
        out[kind] = ReviewBand(low, high)
    return out


def _calibration(raw: Any) -> Calibration | None:
    return None if raw is None else Calibration(float(raw["a"]), float(raw["b"]))


def _around(band: ReviewBand | None, threshold: float | None) -> ReviewBand | None:
    """A band widened to hold the threshold in use: a `--threshold` outside the model's band
    would otherwise make confident calls right next to it."""
    if band is None or threshold is None:
        return band
    return ReviewBand(min(band.low, threshold), max(band.high, threshold))


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
    review: bool = False  # a doubtful call: its score lies in the review band (Labels)
    # For a slide's sampled patches (stain.sampled): its share of the slide's colour statistics
    # (stain.colour_sums), from which the report says whether the slide looks like training's.
    colour: tuple[float, ...] | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def score(self) -> float | None:
        """The score the label was decided on: the slide-context score where the patch has one,
        else its own probability. Everything a report says about a call (colours, rankings, the
        histogram) uses this, so that it never disagrees with the label."""
        return self.probability if self.context is None else self.context


class Classified(NamedTuple):
    """A worker's answer for one image: its probability, or why there is none. (A tuple: one is
    built and pickled per file.)"""

    name: NameInfo
    probability: float | None
    tile: np.ndarray | None
    error: str
    colour: tuple[float, ...] | None = None  # stain.colour_sums, for a sampled patch
