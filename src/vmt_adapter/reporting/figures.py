"""What every figure shares: the Agg backend, atomic saving, one colour per method, and point labels
placed so that they never overlap.

Why a fixed colour table: readers compare a method across subplots and figures (``vmt bench``'s two
panels, ``vmt benchmark``'s dm figure), and matplotlib's colour cycle hands colours out in plotting
order, which changes with the rows each panel happens to hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..fileio import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# One colour per registered method (``models.adapters.METHODS``), dark enough to be read as text too.
METHOD_COLOURS: dict[str, str] = {
    "vmt": "#d62728",
    "vmt-lite": "#ff7f0e",
    "mtlora": "#9467bd",
    "decoder-only": "#7f7f7f",
    "mt-full": "#1f77b4",
    "st-full": "#0e7c86",
    "bitfit": "#e377c2",
    "adapter": "#2ca02c",
    "lora": "#8c564b",
    "vpt-deep": "#9a9a00",
}
UNKNOWN_COLOUR = "#000000"  # a method registered without an entry above still plots, in black

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels
# Where a label may sit around its point, in order of preference: right, then above / below right,
# above, below, then the left side.
DIRECTIONS = ((1, 0), (1, 1), (1, -1), (0, 1), (0, -1), (-1, 0), (-1, 1), (-1, -1))


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (files only), imported on first use so the CLI starts without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> None:
    """Write ``fig`` as a PNG atomically (a reader never sees half a file), then free it."""
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    pyplot().close(fig)


def method_colour(method: str) -> str:
    """The method's colour in every figure."""
    return METHOD_COLOURS.get(method, UNKNOWN_COLOUR)


def overlap(a: Box, b: Box) -> float:
    """Area shared by two boxes (0 when they only touch)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _distance(box: Box, x: float, y: float) -> float:
    """From a point to the nearest point of a box."""
    return math.hypot(max(box[0] - x, 0.0, x - box[2]), max(box[1] - y, 0.0, y - box[3]))


def _inside(box: Box, bounds: Box) -> bool:
    return bounds[0] <= box[0] and bounds[1] <= box[1] and box[2] <= bounds[2] and box[3] <= bounds[3]


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 obstacles: Sequence[Box] = (), bounds: Box | None = None, gap: float = 5.0,
                 step: float = 6.0, rings: int = 40) -> list[Box]:
    """A box per label (``sizes``: width, height) near its anchor, none overlapping another or an obstacle.

    Greedy and deterministic: labels are placed in the order given. The candidates of a label are the
    ``DIRECTIONS`` from its anchor at distances ``gap``, ``gap + step``, ... (``rings`` of them); it takes
    the free one nearest its anchor (ties in ``DIRECTIONS`` order), inside ``bounds`` if any is. Only if
    none is free does it take the one that overlaps least.
    """
    placed: list[Box] = []
    for (ax, ay), (w, h) in zip(anchors, sizes):
        candidates = []
        for ring in range(rings):
            d = gap + ring * step
            for ux, uy in DIRECTIONS:
                cx, cy = ax + ux * (d + w / 2), ay + uy * (d + h / 2)
                candidates.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        candidates.sort(key=lambda c: _distance(c, ax, ay))  # stable sort
        taken = [*obstacles, *placed]
        free = [c for c in candidates if not any(overlap(c, t) for t in taken)]
        inside = [c for c in free if bounds is None or _inside(c, bounds)]
        placed.append((inside or free or [min(candidates, key=lambda c: sum(overlap(c, t) for t in taken))])[0])
    return placed


def label_points(ax: Axes, points: Sequence[tuple[float, float]], labels: Sequence[str],
                 colours: Sequence[str], extents: Sequence[tuple[float, float]] | None = None,
                 marker_px: float = 4.0, fontsize: float = 8) -> None:
    """Annotate data ``points`` with ``labels`` that overlap neither each other nor the points' markers and
    vertical ``extents`` (e.g. error bars, in data units); a label set apart from its point gets a leader line.

    Call it after the axes' limits and layout are final: positions are computed in display space.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    anchors = [tuple(to_px(p)) for p in points]
    sizes = []
    for text in labels:
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((extent.width + 2, extent.height + 2))
    obstacles = []
    for i, (x, y) in enumerate(points):
        lo, hi = extents[i] if extents else (y, y)
        (_, y0), (_, y1) = to_px((x, lo)), to_px((x, hi))
        px, py = anchors[i]
        obstacles.append((px - marker_px, min(y0, py - marker_px), px + marker_px, max(y1, py + marker_px)))
    bounds = tuple(ax.get_window_extent(renderer).extents)
    gap = marker_px + 2
    boxes = place_labels(anchors, sizes, obstacles, bounds, gap=gap)
    points_per_px = 72 / fig.dpi
    for (px, py), box, point, text, colour in zip(anchors, boxes, points, labels, colours):
        dx, dy = (box[0] + box[2]) / 2 - px, (box[1] + box[3]) / 2 - py
        far = _distance(box, px, py) > 1.5 * gap  # not beside its point: a leader line says whose it is
        ax.annotate(text, point, xytext=(dx * points_per_px, dy * points_per_px), textcoords="offset points",
                    ha="center", va="center", fontsize=fontsize, color=colour,
                    arrowprops=dict(arrowstyle="-", color=colour, lw=0.6, shrinkA=0, shrinkB=2) if far else None)
