"""A PNG panel of one raw sample (image and every task map) for eyeballing datasets and exports.

Works on any raw numpy sample (``render_sample`` output or a dataset's ``raw(i)``): it draws the
keys it knows and skips the others. PIL only, so it costs nothing at import time.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

IGNORE_COLOUR = (96, 96, 96)
# Label palette: background black, then distinct saturated colours (cycled for larger ids).
_PALETTE = np.array(
    [
        (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    ],
    np.uint8,
)  # fmt: skip
# Colour stops of the depth heat map (near = dark purple, far = yellow).
_HEAT = np.array([(13, 8, 135), (126, 3, 168), (204, 71, 120), (248, 149, 64), (240, 249, 33)], np.float64)


def _labels(x: np.ndarray) -> np.ndarray:
    """Label map -> RGB; 255 (ignore) in grey."""
    x = x.astype(np.int64)
    rgb = _PALETTE[np.where(x == 0, 0, (x - 1) % (len(_PALETTE) - 1) + 1)]
    rgb[x == 255] = IGNORE_COLOUR
    return rgb


def _normals(n: np.ndarray) -> np.ndarray:
    """Unit normals -> RGB as in the PASCAL PNGs (x * 127.5 + 127.5); zero (invalid) in black."""
    rgb = np.round((n + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    rgb[~np.any(n != 0, axis=-1)] = 0
    return rgb


def _depth(z: np.ndarray) -> np.ndarray:
    """Depth -> heat map over its valid range; 0 (invalid) in black."""
    valid = z > 0
    rgb = np.zeros(z.shape + (3,), np.uint8)
    if valid.any():
        lo, hi = z[valid].min(), z[valid].max()
        s = (z[valid] - lo) / max(hi - lo, 1e-6) * (len(_HEAT) - 1)
        stops = np.arange(len(_HEAT))
        rgb[valid] = np.stack([np.interp(s, stops, _HEAT[:, c]) for c in range(3)], axis=-1).round()
    return rgb


def _binary(x: np.ndarray) -> np.ndarray:
    rgb = np.repeat((x == 1)[..., None] * np.uint8(255), 3, axis=-1)
    rgb[x == 255] = IGNORE_COLOUR
    return rgb


_RENDER = {
    "image": lambda x: x,
    "semseg": _labels,
    "human_parts": _labels,
    "sal": _binary,
    "normals": _normals,
    "depth": _depth,
    "edge": _binary,
    "instance": _labels,
}


def render(key: str, array: np.ndarray) -> np.ndarray:
    """RGB picture of one raw map (``key`` names its layout: a task, ``image`` or ``instance``)."""
    return _RENDER[key](np.asarray(array))


def save_panel(sample: dict[str, Any] | list[tuple[str, np.ndarray]], path: str | os.PathLike[str], columns: int = 4,
               rendered: bool = False) -> None:
    """Write a titled grid of the sample's image and task maps to ``path`` (PNG).

    ``rendered=True`` takes the values as RGB pictures already (e.g. prediction heat maps), in order;
    a list of ``(title, picture)`` pairs is taken as rendered tiles (titles may repeat or be empty).
    """
    if isinstance(sample, list):
        tiles = [(k, np.asarray(v)) for k, v in sample]
    elif rendered:
        tiles = [(k, np.asarray(v)) for k, v in sample.items()]
    else:
        tiles = [(k, render(k, sample[k])) for k in _RENDER if k in sample]
    h, w = tiles[0][1].shape[:2]
    title = 14
    rows = -(-len(tiles) // columns)
    canvas = Image.new("RGB", (columns * (w + 4), rows * (h + title + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (name, rgb) in enumerate(tiles):
        x, y = (i % columns) * (w + 4), (i // columns) * (h + title + 4)
        draw.text((x + 2, y + 1), name, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)), (x, y + title))
    canvas.save(path)
