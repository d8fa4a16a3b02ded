"""Results rows and their table: what ``vmt report``, the demo and the benchmark print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engine.provenance import read_record
from ..engine.score import REFERENCES, dm_obstacle, load_results, multi_task_score
from ..errors import ConfigError
from ..tasks import TASKS, TaskSpec


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


def add_run_details(rows: Sequence[dict[str, Any]], files: Sequence[str], per_class: bool = False,
                    provenance: bool = False) -> None:
    """Give each file's row its ``per_class`` IoU (eval.json) and its ``provenance`` (the ``run.json`` of
    its run folder: the folder itself, or the folder holding the file; None when there is none)."""
    for row, path in zip(rows, files):
        if per_class:
            row["per_class"] = load_results(path)["per_class"]
        if provenance:
            row["provenance"] = read_record(Path(path) if Path(path).is_dir() else Path(path).parent)


def format_per_class(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """One table per label-map task: a line per class, a column per row ("-": absent from both
    prediction and ground truth, or not in that file)."""
    rows = [row for row in rows if "per_class" in row]
    tables = []
    for task in [t for t in TASKS if any(t in row["per_class"] for row in rows)]:
        classes = list(dict.fromkeys(c for row in rows for c in row["per_class"].get(task, {})))
        cells = [[c] + [_per_class_cell(row["per_class"].get(task, {}).get(c)) for row in rows] for c in classes]
        tables.append(render_table([f"{task} IoU (%)"] + [row["name"] for row in rows], cells, markdown))
    return "\n\n".join(tables) or "no per-class IoU in these files (no label-map task, or written before " \
        "eval.json recorded it)"


def _per_class_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_provenance(rows: Sequence[Mapping[str, Any]]) -> str:
    """What produced each row's run (``run.json``): a block of lines per row."""
    blocks = []
    for row in rows:
        if "provenance" not in row:
            continue
        record = row["provenance"]
        if record is None:
            blocks.append(f"{row['name']}: no run.json (not a run folder, or trained before runs recorded it)")
            continue
        lines = [f"{row['name']}:", *_start_lines("started", record)]
        for resume in record.get("resumes", []):
            lines += _start_lines("resumed", resume)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _start_lines(label: str, start: Mapping[str, Any]) -> list[str]:
    """The lines of one process start of a run (the first one, or a resume)."""
    git, versions, box = start.get("git"), start.get("versions", {}), start.get("machine", {})
    return [
        f"  {label:<9} {start.get('started')} at step {start.get('step')}",
        f"  {'command':<9} {start.get('command')}",
        f"  {'source':<9} " + (f"git {git['commit']}{' (dirty)' if git['dirty'] else ''}" if git
                               else "not a git checkout (or no git)"),
        f"  {'versions':<9} " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"  {'device':<9} {start.get('device')} x {start.get('world_size')} process(es), "
        f"{start.get('torch_threads')} torch thread(s)",
        f"  {'machine':<9} {box.get('platform')}, {box.get('cpus')} CPUs, GPU {box.get('gpu') or 'none'}",
    ]


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
    cells = [[row["name"]] + [_number(row["metrics"][s.name]) if s.name in row["metrics"] else "-" for s in specs]
             for row in rows]
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
