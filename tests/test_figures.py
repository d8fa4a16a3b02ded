"""Figures: point labels never overlap, and a method keeps one colour in every panel and every figure."""

from __future__ import annotations

import itertools

from matplotlib.colors import to_hex

from vmt_adapter.experiments.speed import FROZEN, figure, registry_name
from vmt_adapter.experiments.suite import dm_params_figure
from vmt_adapter.models.adapters import METHODS
from vmt_adapter.reporting.figures import METHOD_COLOURS, method_colour, overlap, place_labels, pyplot


def test_placed_labels_overlap_neither_each_other_nor_the_markers() -> None:
    # Twelve points within 30 x 16 pixels, labels far wider than the gaps between them.
    anchors = [(100 + 3 * (i % 6) + (i % 5), 100 + 2 * i - (i % 3)) for i in range(12)]
    sizes = [(40 + 7 * (i % 4), 11 + (i % 2)) for i in range(12)]
    markers = [(x - 4, y - 4, x + 4, y + 4) for x, y in anchors]
    boxes = place_labels(anchors, sizes, markers, bounds=(0, 0, 400, 300))
    assert place_labels(anchors, sizes, markers, bounds=(0, 0, 400, 300)) == boxes  # deterministic
    for (x0, y0, x1, y1), (w, h) in zip(boxes, sizes):
        assert (x1 - x0, y1 - y0) == (w, h) and x0 >= 0 and x1 <= 400 and y0 >= 0 and y1 <= 300
    assert all(overlap(a, b) == 0 for a, b in itertools.combinations(boxes, 2))
    assert all(overlap(a, m) == 0 for a in boxes for m in markers)


def crowded_rows() -> list[dict]:
    """Every method at nearly the same dm and parameter count, as in the embedded benchmark's table."""
    return [{"method": m, "dm": 14.0 + 0.2 * i, "dm_std": 0.8, "trainable_params": 600_000 + 20_000 * i}
            for i, m in enumerate(METHODS)]


def test_dm_figure_labels_do_not_overlap_on_a_crowded_table() -> None:
    fig = dm_params_figure(crowded_rows())
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = [tuple(t.get_window_extent().extents) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == sorted(METHODS)
    assert all(overlap(a, b) == 0 for a, b in itertools.combinations(boxes, 2))
    pyplot().close(fig)


def bench_rows() -> list[dict]:
    """``vmt bench`` rows with ``frozen`` first: it has no fwd+bwd time, so a colour cycle would shift."""
    common = {"backbone": "swin_nano", "size": 64, "batch": 1, "device": "cpu", "threads": 1, "precision": "fp32",
              "repeats": 1}
    rows = []
    for method, unfolded in ((FROZEN, False), ("vmt", False), ("vmt", True), ("adapter", False)):
        for t in (1, 2):
            rows.append({**common, "method": method, "tasks": t, "unfolded": unfolded, "fwd_ms": 10.0 * t,
                         "fwd_bwd_ms": None if method == FROZEN else 30.0 * t})
    return rows


def test_a_method_has_one_colour_in_every_panel_and_figure() -> None:
    assert set(METHOD_COLOURS) == set(METHODS)
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)
    seen: dict[str, set[str]] = {}
    bench = figure(bench_rows())
    for ax in bench.axes:
        for line in ax.get_lines():
            method = registry_name(line.get_label().split(" (")[0])
            seen.setdefault(method, set()).add(to_hex(line.get_color()))
    dm = dm_params_figure(crowded_rows())
    ax = dm.axes[0]
    for container, text in zip(ax.containers, ax.texts):
        seen.setdefault(text.get_text(), set()).update({to_hex(container[0].get_color()), to_hex(text.get_color())})
    for method, colours in seen.items():
        assert colours == {method_colour(method)}, method
    assert {"decoder-only", "vmt", "adapter"} <= set(seen)
    pyplot().close(bench)
    pyplot().close(dm)
