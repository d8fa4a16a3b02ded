"""A PNG panel of one raw sample (image and every task map) for eyeballing datasets and exports.

Works on any raw numpy sample (``render_sample`` output or a dataset's ``raw(i)``): it draws the
image, every task (each as its kind draws a raw map) and instances, and skips the other keys.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..kinds import kind_of
from ..kinds.base import label_colours
from ..tasks import TASKS


def render(key: str, array: np.ndarray) -> np.ndarray:
    """RGB picture of one raw map: ``key`` a task (drawn by its kind), ``image`` or ``instance`` (labels)."""
    array = np.asarray(array)
    if key == "image":
        return array
    if key == "instance":
        return label_colours(array)
    return kind_of(TASKS[key]).raw_picture(array)


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
        tiles = [(k, render(k, sample[k])) for k in ("image", *TASKS, "instance") if k in sample]
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
