"""Per-slide colour standardisation (Reinhard et al. 2001, in l-alpha-beta space): one definition for the
trainer and the scan.

Stain and scanner shift an H&E slide's colours as a whole, and a model's scores shift with them:
a threshold fitted on some patients' slides does not carry to a new lab's. Mapping each slide's
tissue colours (mean and spread per l-alpha-beta channel) onto the training patients' average gives the
model slides that look alike. The statistics are the slide's own, pooled over its patches: a
single 50x50 patch, often half background, is too small to estimate them.

Background (near-white glass) is left alone: its colour says nothing about the stain, and
standardising it with the tissue's statistics would tint it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# RGB -> LMS cone space (Reinhard et al. 2001), then log10 LMS -> l-alpha-beta (decorrelated channels).
_LMS_FROM_RGB = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
_LAB_FROM_LOG_LMS = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
_RGB_FROM_LMS = np.linalg.inv(_LMS_FROM_RGB)
_LOG_LMS_FROM_LAB = np.linalg.inv(_LAB_FROM_LOG_LMS)

# A pixel is tissue when its darkest channel is below this (glass scans near 230-255).
TISSUE_BELOW = 215
MIN_TISSUE_PIXELS = 500  # fewer than this on a slide: no statistics, patches left as they are


@dataclass(frozen=True)
class ColourStats:
    """Mean and standard deviation of a slide's tissue pixels in each l-alpha-beta channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixels: int = 0  # tissue pixels they were measured on

    def to_metadata(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_metadata(cls, raw: dict[str, Any]) -> ColourStats:
        mean = tuple(float(v) for v in raw["mean"])
        std = tuple(float(v) for v in raw["std"])
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError("colour statistics need 3 means and 3 positive spreads")
        return cls((mean[0], mean[1], mean[2]), (std[0], std[1], std[2]))

    @classmethod
    def mean_of(cls, slides: Iterable[ColourStats]) -> ColourStats:
        """The average slide: the target every slide is mapped onto."""
        stats = list(slides)
        mean = np.mean([s.mean for s in stats], axis=0)
        std = np.mean([s.std for s in stats], axis=0)
        return cls(_triple(mean), _triple(std), sum(s.pixels for s in stats))


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def to_lab(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float l-alpha-beta (..., 3)."""
    lms = np.maximum(pixels.astype(np.float64) @ _LMS_FROM_RGB.T, 1.0)
    return np.log10(lms) @ _LAB_FROM_LOG_LMS.T


def to_rgb(lab: np.ndarray) -> np.ndarray:
    """float l-alpha-beta (..., 3) -> uint8 RGB (..., 3), rounded and clipped."""
    lms = np.power(10.0, lab @ _LOG_LMS_FROM_LAB.T)
    return np.clip(np.rint(lms @ _RGB_FROM_LMS.T), 0, 255).astype(np.uint8)


def tissue_mask(pixels: np.ndarray) -> np.ndarray:
    """Where the darkest channel is below TISSUE_BELOW. (Two element-wise minimums: numpy's
    `min(axis=-1)` over a 3-wide last axis took 60 us for a 50x50 patch, this 5.)"""
    darkest = np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
    return darkest < TISSUE_BELOW


# Sums = (tissue pixels, sum of each l-alpha-beta channel, sum of each one's square): what a
# worker sends for a sampled patch, and what a slide's patches add up to.
Sums = tuple[float, float, float, float, float, float, float]


def colour_sums(pixels: np.ndarray) -> Sums:
    """One patch's contribution to its slide's colour statistics.

    l-alpha-beta is a linear map of log LMS, so the sums of its values and of their squares
    follow from log LMS's own sum and 3x3 Gram matrix: one pass over the pixels instead of
    three (a worker does this for every 16th patch of a slide)."""
    tissue = pixels.reshape(-1, 3)[tissue_mask(pixels).reshape(-1)]
    log_lms = np.log10(np.maximum(tissue.astype(np.float64) @ _LMS_FROM_RGB.T, 1.0))
    total = _LAB_FROM_LOG_LMS @ log_lms.sum(axis=0)
    square = np.einsum("ij,jk,ik->i", _LAB_FROM_LOG_LMS, log_lms.T @ log_lms, _LAB_FROM_LOG_LMS)
    return (float(len(tissue)), *map(float, total), *map(float, square))  # type: ignore[return-value]


def stats_from_sums(sums: Sums) -> ColourStats | None:
    """A slide's statistics from its sampled patches' summed contributions."""
    n = sums[0]
    if n < MIN_TISSUE_PIXELS:
        return None
    mean = np.asarray(sums[1:4]) / n
    std = np.sqrt(np.maximum(np.asarray(sums[4:7]) / n - mean * mean, 1e-12))
    return ColourStats(_triple(mean), _triple(std), int(n))


def slide_stats(patches: Iterable[np.ndarray]) -> ColourStats | None:
    """The tissue colour statistics of a slide from (a sample of) its patches, pooled; None when
    the slide shows too little tissue to measure."""
    tissue = [p.reshape(-1, 3)[tissue_mask(p).reshape(-1)] for p in patches]
    pooled = np.concatenate(tissue) if tissue else np.empty((0, 3), np.uint8)
    if len(pooled) < MIN_TISSUE_PIXELS:
        return None
    lab = to_lab(pooled)
    std = np.maximum(lab.std(axis=0), 1e-6)
    return ColourStats(_triple(lab.mean(axis=0)), _triple(std), len(pooled))


def standardise(pixels: np.ndarray, slide: ColourStats, target: ColourStats) -> np.ndarray:
    """`pixels` (uint8, (..., H, W, 3)) with their tissue moved from the slide's colour statistics
    to the target's; background pixels unchanged."""
    mask = tissue_mask(pixels)
    if not mask.any():
        return pixels
    lab = to_lab(pixels[mask])
    scale = np.asarray(target.std) / np.asarray(slide.std)
    moved = (lab - np.asarray(slide.mean)) * scale + np.asarray(target.mean)
    out = pixels.copy()
    out[mask] = to_rgb(moved)
    return out


def sampled(x: int, y: int, step: int) -> bool:
    """Whether a patch at (x, y) is one of its slide's colour samples: every 4th column of every
    4th row, a lattice spread over the whole slide whatever the order or batching of a scan."""
    return (x // step) % 4 == 0 and (y // step) % 4 == 0


def drift(slide: ColourStats, reference: ColourStats, spread: ColourStats) -> float:
    """How far a slide's colours lie from the training slides': the largest distance over the
    l-alpha-beta means and spreads, in units of the training slides' own standard deviation of each."""
    mean = np.abs(np.subtract(slide.mean, reference.mean)) / np.asarray(spread.mean)
    std = np.abs(np.subtract(slide.std, reference.std)) / np.asarray(spread.std)
    return float(max(mean.max(), std.max()))
