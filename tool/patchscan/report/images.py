"""Pictures for the HTML report: slide mosaics, score heatmaps, maps of the calls, thumbnails, as
data URIs (PNG for drawn maps, JPEG for photographs of tissue, a fifth of the size)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from patchscan.report.summary import Tile
from patchscan.results import TILE

BACKGROUND = (242, 242, 242)
# Perceptually ordered blue → yellow → red; low probability is cool, high is hot.
_ANCHORS = np.array(
    [
        [49, 54, 149],
        [69, 117, 180],
        [171, 217, 233],
        [255, 255, 191],
        [253, 174, 97],
        [215, 48, 39],
        [165, 0, 38],
    ],
    dtype=np.float64,
)
# The calls map and the truth map share these, so that the two read side by side.
TRUTH_COLOURS = {False: (171, 217, 233), True: (215, 48, 39)}
# A call in the model's review band keeps its side's hue, paler: which way it went still shows
# (a purple of their own hid where a slide's IDC was called once most of it was in the band).
REVIEW_COLOURS = {False: (203, 188, 230), True: (244, 165, 130)}
MIN_MAP_WIDTH = 160  # px a slide's maps are shown at, at least: a caption fits beneath
MAX_MAP_WIDTH = 250  # four maps (tissue, score, calls, truth) in a row of a 1200 px window


def gradient_stops() -> list[tuple[float, str]]:
    """The colour scale as (offset 0-1, #rrggbb) stops, for a legend drawn in SVG."""
    last = len(_ANCHORS) - 1
    return [(i / last, "#" + "".join(f"{int(c):02x}" for c in a)) for i, a in enumerate(_ANCHORS)]


def around_threshold(score: np.ndarray | float, threshold: float) -> np.ndarray:
    """A score placed on the colour scale so that the threshold sits at its middle (the pale
    yellow between blue and red): warm exactly where the call is positive, whatever the
    threshold. Linear on each side, so a legend of 0 · threshold · 1 reads it."""
    score = np.asarray(score, dtype=np.float64)
    t = min(max(threshold, 1e-9), 1 - 1e-9)
    return np.where(score < t, 0.5 * score / t, 0.5 + 0.5 * (score - t) / (1 - t))


def colour(probability: np.ndarray) -> np.ndarray:
    """Map probabilities in [0, 1] to uint8 RGB."""
    position = np.clip(probability, 0, 1) * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_ANCHORS) - 2)
    weight = (position - low)[..., None]
    return (_ANCHORS[low] * (1 - weight) + _ANCHORS[low + 1] * weight).round().astype(np.uint8)


def jpeg_data_uri(pixels: np.ndarray) -> str:
    """A photograph (a patch, a skin lesion) as a data URI: JPEG, a fifth of a PNG's size."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(pixels: np.ndarray | Image.Image) -> str:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grid_step(values: Sequence[int]) -> int:
    """The spacing of the patch grid: the smallest gap between distinct coordinates (50 for IDC)."""
    unique = np.unique(np.asarray(values))
    gaps = np.diff(unique)
    return int(gaps[gaps > 0].min()) if len(unique) > 1 else 50


def slide_maps(tiles: Sequence[Tile]) -> dict[str, np.ndarray]:
    """Rebuild a slide from its patches: tissue mosaic, the heatmap of the score each patch was
    labelled by (coloured around its threshold), the calls, and the truth where names give it."""
    xs = [t.x for t in tiles]
    ys = [t.y for t in tiles]
    step_x, step_y = grid_step(xs), grid_step(ys)
    x0, y0 = min(xs), min(ys)
    columns = (max(xs) - x0) // step_x + 1
    rows = (max(ys) - y0) // step_y + 1
    tissue = np.full((rows * TILE, columns * TILE, 3), BACKGROUND, dtype=np.uint8)
    heat = np.full((rows, columns, 3), BACKGROUND, dtype=np.uint8)
    calls = np.full((rows, columns, 3), BACKGROUND, dtype=np.uint8)
    truth = np.full((rows, columns, 3), BACKGROUND, dtype=np.uint8)
    has_truth = False
    for tile in tiles:
        col, row = (tile.x - x0) // step_x, (tile.y - y0) // step_y
        tissue[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = tile.pixels
        heat[row, col] = colour(around_threshold(tile.score, tile.threshold))
        calls[row, col] = (REVIEW_COLOURS if tile.review else TRUTH_COLOURS)[tile.positive]
        if tile.truth is not None:
            truth[row, col] = TRUTH_COLOURS[tile.truth]
            has_truth = True
    # One pixel per patch: the page enlarges them (pixelated) to the mosaic's width.
    maps = {"tissue": tissue, "score": heat, "calls": calls}
    if has_truth:
        maps["truth"] = truth
    return maps


def shown_width(pixels: np.ndarray) -> int:
    """The width a map is shown at: tiny slides enlarged (pixelated) so that their caption is
    not wider than the picture, huge ones shrunk to keep three maps in a row."""
    return int(min(max(pixels.shape[1], MIN_MAP_WIDTH), MAX_MAP_WIDTH))
