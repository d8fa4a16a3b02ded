"""Results rows and their table: what ``vmt report``, the demo and the benchmark print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..tasks import TASKS, TaskSpec
from .score import REFERENCES, dm_obstacle, load_results, multi_task_score


def rows_of_results(results: Sequence[Mapping[str, Any]], reference: Mapping[str, float] | None,
                    where: Sequence[str] | None = None, ref_dataset: str | None = None) -> list[dict[str, Any]]:
    """One ``{"name", "metrics", "dm", "trainable", "note"}`` row per results dict.

    ``dm`` is None without a reference, and (with a ``note`` saying why) when the row lacks one of
    the reference's tasks or was measured on another dataset than ``ref_dataset``. A published row
    without per-task numbers gives the dm it states, against that reference only.
    """
    rows = []
    for i, result in enumerate(results):
        note = dm = None
        if reference is not None and result.get("stated_dm") is not None:
            same = REFERENCES[result["stated_reference"]] == dict(reference)
            dm = result["stated_dm"] if same else None
            note = ("dm as published (no per-task numbers)" if same
                    else f"no dm: published against {result['stated_reference']} only")
        elif reference is not None:
            note = dm_obstacle(result, reference, ref_dataset)
            try:
                dm = None if note else multi_task_score(result["metrics"], reference)
            except ConfigError as exc:
                raise ConfigError(f"{where[i] if where else result['name']}: {exc}") from None
        trainable = result.get("trainable", (result.get("params") or {}).get("trainable"))
        rows.append({"name": result["name"], "metrics": result["metrics"], "dm": dm, "trainable": trainable,
                     "note": note})
    return rows


def build_rows(files: Sequence[str], reference: Mapping[str, float] | None,
               ref_dataset: str | None = None) -> list[dict[str, Any]]:
    """``rows_of_results`` of results files (a run's eval.json, or a hand-written results file)."""
    return rows_of_results([load_results(path) for path in files], reference, where=files, ref_dataset=ref_dataset)


def footnotes(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row whose dm was withheld, saying why, or taken as published."""
    return "\n".join(f"- {row['name']}: {row['note']}" for row in rows if row.get("note"))


def _task_header(spec: TaskSpec) -> str:
    unit = f" ({spec.unit})" if spec.unit else ""
    return f"{spec.name} {spec.headline}{unit} {'↑' if spec.higher_is_better else '↓'}"


def _number(value: float) -> str:
    """Two decimals, or four for small numbers such as the edge loss."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def format_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False, reference: str | None = None) -> str:
    """Aligned text (or markdown) table: name, one column per task, then dm and trainable when known."""
    specs = [spec for name, spec in TASKS.items() if any(name in row["metrics"] for row in rows)]
    headers = ["name"] + [_task_header(spec) for spec in specs]
    cells = [[row["name"]] + [_number(row["metrics"][s.name]) if s.name in row["metrics"] else "-" for s in specs] for row in rows]
    if any(row["dm"] is not None for row in rows):
        headers.append(f"dm vs {reference} (%) ↑" if reference else "dm (%) ↑")
        for line, row in zip(cells, rows):
            line.append("-" if row["dm"] is None else f"{row['dm']:+.2f}")
    if any(row["trainable"] is not None for row in rows):
        headers.append("trainable (M)")
        for line, row in zip(cells, rows):
            line.append("-" if row["trainable"] is None else f"{row['trainable'] / 1e6:.2f}")
    return render_table(headers, cells, markdown)


def render_table(headers: Sequence[str], cells: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """The project's one table layout: markdown, or aligned text (first column left, the others right)."""
    if markdown:
        return "\n".join(
            ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
            + ["| " + " | ".join(line) + " |" for line in cells]
        )
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]

    def align(line: Sequence[str]) -> str:
        return "  ".join([line[0].ljust(widths[0])] + [text.rjust(w) for text, w in zip(line[1:], widths[1:])])

    return "\n".join([align(headers), align(["-" * w for w in widths])] + [align(line) for line in cells])
