"""Slide context: a patch of a slide is called from itself and the patches around it.

Invasive carcinoma is a region of a slide, not a lone 50x50 speck, and a pathologist reads a
patch with its surroundings. For a model whose metadata carries a `context` entry (idc), each
patch with a position (x, y in its name) gets a context score: the weighted mean of its own
probability (weight `self_weight`) and those of the classified patches of the same slide up to
`radius` steps away in x and y, and is labelled by that score against the context threshold
(chosen on the validation patients by the trainer, which scores through this same module).
Patches without a position keep the model's own probability and threshold.

The scan applies it as a stage after the model (pipeline.with_context).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlideContext:
    step: int  # px between neighbouring patches' x (and y) in their names
    radius: int  # neighbours up to this many steps away in x and in y
    self_weight: float  # the patch's own probability counts this many times a neighbour's
    threshold: float  # a context score at or above it is labelled positive

    @classmethod
    def from_metadata(cls, raw: dict[str, Any]) -> SlideContext:
        return cls(
            step=int(raw["step"]),
            radius=int(raw["radius"]),
            self_weight=float(raw["self_weight"]),
            threshold=float(raw["threshold"]),
        )

    def to_metadata(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "radius": self.radius,
            "self_weight": self.self_weight,
            "threshold": self.threshold,
        }

    def scores(self, patches: Sequence[tuple[int, int, float]]) -> list[float]:
        """The context score of each (x, y, probability) of one slide, in the same order."""
        step, radius = self.step, self.radius
        # Cells keyed by one int (x cell * 2^32 + y cell): a third cheaper to look up than tuples.
        cells = {(x // step << 32) + y // step: p for x, y, p in patches}
        offsets = [
            (dx << 32) + dy
            for dx in range(-radius, radius + 1)
            for dy in range(-radius, radius + 1)
            if dx or dy
        ]
        out = []
        for x, y, p in patches:
            key = (x // step << 32) + y // step
            total, weight = self.self_weight * p, self.self_weight
            for offset in offsets:
                neighbour = cells.get(key + offset)
                if neighbour is not None:
                    total += neighbour
                    weight += 1.0
            out.append(total / weight)
        return out
