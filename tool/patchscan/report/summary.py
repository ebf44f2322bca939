"""Everything the JSON and HTML reports say, accumulated one Result at a time in bounded memory.

numpy is imported only to compute metrics at the end: a CSV-only scan's main process never
needs it, and its workers start sooner for not waiting on the import.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchscan import __version__
from patchscan.model import Model, ModelInfo
from patchscan.results import Labels, Result

if TYPE_CHECKING:
    import numpy as np

HISTOGRAM_BINS = 20
TOP_SUSPICIOUS = 24  # of a scan without slides: its highest-scoring photos
TOP_PER_SLIDE = 6  # of a slide scan: each slide's highest-scoring patches
REVIEW_SHOWN = 12  # per slide: the doubtful patches nearest the threshold, as thumbnails
MAX_LISTED_ERRORS = 1000


@dataclass
class Provenance:
    """Who made this report, with what, and how."""

    tool_version: str
    model: ModelInfo
    model_path: Path
    model_sha256: str
    labels: Labels  # the label rule the run applied (the thresholds actually used)
    command_line: str
    settings: dict[str, Any]
    started: str
    finished: str = ""
    interrupted: bool = False


@dataclass
class Tile:
    """A positioned patch as the slide maps draw it: the score its label was decided on, the
    threshold it was decided at, and the call itself."""

    x: int
    y: int
    score: float
    threshold: float
    positive: bool
    review: bool
    truth: bool | None
    pixels: np.ndarray


@dataclass
class Group:
    name: str
    patches: int = 0
    positives: int = 0
    review: int = 0  # calls in the review band
    errors: int = 0
    positioned: int = 0  # classified patches with an x, y in their names
    colour: list[float] = field(default_factory=lambda: [0.0] * 7)  # stain.colour_sums, added
    probability_sum: float = 0.0
    truth: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # what each label was decided on
    called: list[bool] = field(default_factory=list)  # labelled positive
    tiles: list[Tile] = field(default_factory=list)
    top: list[tuple[float, str]] = field(default_factory=list)  # heap: (score, path)

    def as_dict(self) -> dict[str, Any]:
        classified = self.patches - self.errors
        out: dict[str, Any] = {
            "group": self.name,
            "files": self.patches,
            "classified": classified,
            "positive": self.positives,
            "positive_fraction": self.positives / classified if classified else None,
            "review": self.review,
            "mean_probability": self.probability_sum / classified if classified else None,
            "errors": self.errors,
        }
        if self.truth:
            import numpy as np

            from patchscan import metrics

            truth = np.array(self.truth)
            out["truth_positive"] = int(truth.sum())
            out["metrics"] = metrics.summarize(truth, np.array(self.called))
            out["metrics"]["roc_auc"] = metrics.roc_auc(truth, np.array(self.scores))
        return out


def timestamp() -> str:
    """Now, as the reports write it: local time with its UTC offset, to the second."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class Summary:
    def __init__(self, provenance: Provenance, keep_tiles: bool = True) -> None:
        self.provenance = provenance
        self.keep_tiles = keep_tiles  # only the HTML report draws slides
        self.counts: Counter[str] = Counter({label: 0 for label in provenance.model.classes})
        self.skipped: Counter[str] = Counter()
        self.errors: list[tuple[str, str]] = []
        self.error_count = 0
        self.groups: dict[str, Group] = {}
        self.histogram = [0] * HISTOGRAM_BINS
        self.truth: list[bool] = []
        self.scores: list[float] = []  # what each label was decided on
        self.called: list[bool] = []  # labelled positive
        self._top: list[tuple[float, str, str]] = []
        self.thresholds: Counter[float] = Counter()  # patches labelled at each threshold
        self.review_counts: Counter[str] = Counter({label: 0 for label in provenance.model.classes})
        # Per slide, the doubtful patches nearest the threshold: (-distance, path, score, label).
        self._review: dict[str, list[tuple[float, str, float, str]]] = {}

    @classmethod
    def start(
        cls,
        model: Model,
        labels: Labels,
        command_line: str,
        settings: dict[str, Any],
        keep_tiles: bool,
        started: str | None = None,
    ) -> Summary:
        """An empty summary whose provenance records the run (a scan's or a watch's `settings`,
        as RunSettings.as_dict gives them); `keep_tiles` when a report will draw the slides."""
        provenance = Provenance(
            tool_version=__version__,
            model=model.info,
            model_path=model.path,
            model_sha256=model.sha256,
            labels=labels,
            command_line=command_line,
            settings=settings,
            started=started or timestamp(),
        )
        return cls(provenance, keep_tiles)

    def finish(self, interrupted: bool = False) -> None:
        self.provenance.finished = timestamp()
        self.provenance.interrupted = interrupted

    @property
    def classified(self) -> int:
        return sum(self.counts.values())

    def add_skipped(self, reason: str) -> None:
        self.skipped[reason] += 1

    def add(self, result: Result) -> None:
        name = result.name
        group = self.groups.get(name.group)
        if group is None:
            group = self.groups[name.group] = Group(name.group)
        group.patches += 1
        if not result.ok or result.probability is None:
            group.errors += 1
            self.error_count += 1
            if len(self.errors) < MAX_LISTED_ERRORS:
                self.errors.append((result.path, result.error))
            return
        probability = result.probability
        score = result.score
        assert score is not None
        positive = result.label == self.provenance.model.positive
        cut = self.provenance.labels.threshold_of(result)  # the threshold the label was decided at
        self.thresholds[cut] += 1
        self.counts[result.label] += 1
        group.positives += positive
        if result.colour is not None:
            group.colour = [a + b for a, b in zip(group.colour, result.colour, strict=True)]
        if result.review:
            self._add_review(group, result)
        group.probability_sum += probability
        self.histogram[min(int(score * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        truth = None if name.truth is None else name.truth == self.provenance.model.positive
        if truth is not None:
            self.truth.append(truth)
            self.scores.append(score)
            self.called.append(positive)
            group.truth.append(truth)
            group.scores.append(score)
            group.called.append(positive)
        if name.x is not None and name.y is not None:
            group.positioned += 1
            if self.keep_tiles and result.tile is not None:
                tile = Tile(name.x, name.y, score, cut, positive, result.review, truth, result.tile)
                group.tiles.append(tile)
        _keep_highest(self._top, (score, result.path, name.group), TOP_SUSPICIOUS)
        _keep_highest(group.top, (score, result.path), TOP_PER_SLIDE)

    def _add_review(self, group: Group, result: Result) -> None:
        group.review += 1
        self.review_counts[result.label] += 1
        labels = self.provenance.labels
        score = result.score
        assert score is not None
        entry = (-abs(score - labels.threshold_of(result)), result.path, score, result.label)
        _keep_highest(self._review.setdefault(group.name, []), entry, REVIEW_SHOWN)

    @property
    def review_total(self) -> int:
        return sum(self.review_counts.values())

    def review_by_slide(self) -> list[tuple[Group, list[tuple[str, float, str]]]]:
        """Slides with doubtful calls, most first, each with its most doubtful patches (path,
        score, label), nearest the threshold first."""
        groups = sorted(
            (g for g in self.groups.values() if g.review), key=lambda g: (-g.review, g.name)
        )
        return [
            (
                g,
                [
                    (path, score, label)
                    for _, path, score, label in sorted(self._review[g.name], reverse=True)
                ],
            )
            for g in groups
        ]

    def review_nearest(self) -> list[tuple[str, float, str]]:
        """The scan's most doubtful files (path, score, label), nearest the threshold first,
        whichever folder they lie in: for photos, which are one set, not slides."""
        kept = heapq.nlargest(REVIEW_SHOWN, (e for shown in self._review.values() for e in shown))
        return [(path, score, label) for _, path, score, label in kept]

    def drift(self, group: Group) -> float | None:
        """How far a slide's tissue colours lie from the training slides' (stain.drift: in
        training-slide standard deviations), or None when the model keeps no colour range or
        too little of the slide was sampled."""
        colour = self.provenance.model.stain
        if not colour:
            return None
        from patchscan import stain  # numpy: only for a report, only with such a model

        stats = stain.stats_from_sums(tuple(group.colour))  # type: ignore[arg-type]
        if stats is None:
            return None
        reference = stain.ColourStats.from_metadata(colour["reference"])
        spread = stain.ColourStats.from_metadata(colour["spread"])
        return round(stain.drift(stats, reference, spread), 3)

    def outside(self, group: Group) -> bool:
        """Whether a slide looks unlike every slide the model was trained on: its calls, and the
        review band's guarantee, may not hold there."""
        drift = self.drift(group)
        limit = (self.provenance.model.stain or {}).get("drift_limit")
        return drift is not None and limit is not None and drift > float(limit)

    def most_suspicious(self) -> list[tuple[float, str, str]]:
        """The highest-scoring files of the whole scan: (score, path, group), highest first."""
        return sorted(self._top, reverse=True)

    def most_suspicious_of(self, group: Group) -> list[tuple[float, str]]:
        """A slide's highest-scoring patches: (score, path), highest first."""
        return sorted(group.top, reverse=True)

    @property
    def has_slides(self) -> bool:
        """Whether the groups are slides, worth a table, maps and rankings of their own.

        The rule: a scan has slides when some classified file has a position (x, y) in its name,
        the mark of a patch cut from a slide. Files without one are photos, and their group is
        only the folder they lie in (a class folder's parent, `skin` for `skin/benign/*.jpg`):
        a row per folder would say nothing a reader needs, so photos are reported as one set.
        """
        return any(g.positioned for g in self.groups.values())

    def quality(self) -> dict[str, Any] | None:
        """Metrics against the truth found in names/folders, when any was found."""
        if not self.truth:
            return None
        import numpy as np

        from patchscan import metrics

        truth = np.array(self.truth)
        scores = np.array(self.scores)
        predicted = np.array(self.called)
        return {
            **metrics.summarize(truth, predicted),
            "roc_auc": metrics.roc_auc(truth, scores),
            "confusion_matrix": metrics.confusion(truth, predicted),
            "confusion_matrix_labels": list(self.provenance.model.classes),
        }

    def _review_dict(self) -> dict[str, Any] | None:
        """What needs a human: counts per class, the error-rate target the band keeps decided
        calls under, and the held-out data it was chosen on. None for a model without a band."""
        labels = self.provenance.labels
        if not labels.has_review:
            return None
        raw = self.provenance.model.review or {}
        return {
            "total": self.review_total,
            "counts": dict(self.review_counts),
            "target_error": labels.review_target,
            "confidence": raw.get("confidence"),
            "method": raw.get("method"),
            "calibration_set": raw.get("calibration_set"),
        }

    def as_dict(self) -> dict[str, Any]:
        """The JSON report."""
        p = self.provenance
        return {
            "tool": {"name": "patchscan", "version": p.tool_version},
            "model": {
                "name": p.model.name,
                "version": p.model.version,
                "path": str(p.model_path),
                "sha256": p.model_sha256,
                "threshold": p.labels.threshold,
                "slide_context": (
                    {**p.model.context.to_metadata(), "threshold": p.labels.context_threshold}
                    if p.model.context
                    else None
                ),
                "classes": list(p.model.classes),
                "positive_class": p.model.positive,
            },
            "settings": p.settings,
            "command_line": p.command_line,
            "started": p.started,
            "finished": p.finished,
            "interrupted": p.interrupted,
            "files": self.classified + self.error_count,
            "counts": dict(self.counts),
            "review": self._review_dict(),
            "errors": self.error_count,
            "error_list": [{"path": path, "error": reason} for path, reason in self.errors],
            "skipped": dict(self.skipped),
            "groups": [
                {**g.as_dict(), "colour_drift": self.drift(g), "outside_training": self.outside(g)}
                for g in self.groups.values()
            ],
            "histogram": {
                "bins": HISTOGRAM_BINS,
                "counts": list(self.histogram),
                "of": "the score each label was decided on (slide context where applied)",
            },
            "metrics": self.quality(),
        }


def _keep_highest(heap: list[Any], entry: Any, room: int) -> None:
    """Keep in the min-heap `heap` the `room` largest entries met so far."""
    if len(heap) < room:
        heapq.heappush(heap, entry)
    elif entry > heap[0]:
        heapq.heapreplace(heap, entry)
