"""Pictures for the HTML report: slide mosaics, probability heatmaps, thumbnails, as PNG data URIs."""

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
TRUTH_COLOURS = {False: (171, 217, 233), True: (215, 48, 39)}


def colour(probability: np.ndarray) -> np.ndarray:
    """Map probabilities in [0, 1] to uint8 RGB."""
    position = np.clip(probability, 0, 1) * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_ANCHORS) - 2)
    weight = (position - low)[..., None]
    return (_ANCHORS[low] * (1 - weight) + _ANCHORS[low + 1] * weight).round().astype(np.uint8)


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
    """Rebuild a slide from its patches: tissue mosaic, probability heatmap and, if known, truth."""
    xs = [t.x for t in tiles]
    ys = [t.y for t in tiles]
    step_x, step_y = grid_step(xs), grid_step(ys)
    x0, y0 = min(xs), min(ys)
    columns = (max(xs) - x0) // step_x + 1
    rows = (max(ys) - y0) // step_y + 1
    tissue = np.full((rows * TILE, columns * TILE, 3), BACKGROUND, dtype=np.uint8)
    heat = np.full((rows, columns, 3), BACKGROUND, dtype=np.uint8)
    truth = np.full((rows, columns, 3), BACKGROUND, dtype=np.uint8)
    has_truth = False
    for tile in tiles:
        col, row = (tile.x - x0) // step_x, (tile.y - y0) // step_y
        tissue[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = tile.pixels
        heat[row, col] = colour(np.array(tile.probability))
        if tile.truth is not None:
            truth[row, col] = TRUTH_COLOURS[tile.truth]
            has_truth = True
    maps = {"tissue": tissue, "probability": _upscale(heat)}
    if has_truth:
        maps["truth"] = _upscale(truth)
    return maps


def colour_bar(width: int = 200, height: int = 10) -> np.ndarray:
    return np.repeat(colour(np.linspace(0, 1, width))[None, :, :], height, axis=0)


def _upscale(cells: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(cells, TILE, axis=0), TILE, axis=1)
