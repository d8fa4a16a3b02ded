"""``vmt report``: results files side by side, with the multi-task score against a reference."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..engine.score import REFERENCES, load_results, multi_task_score, resolve_reference
from ..errors import ConfigError
from ..tasks import TASKS, TaskSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="tabulate results files and their multi-task score",
        description="One row per results file (a run's eval.json, or {\"name\", \"metrics\": {task: headline}}); "
        "with --reference, dm % = 100/T sum_t s_t (M_t - M_ref,t) / M_ref,t over the tasks both report.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="results JSON files")
    parser.add_argument(
        "--reference",
        metavar="NAME|FILE",
        help=f"single-task reference for dm: built-in {', '.join(REFERENCES)} or a results file",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print a markdown table")
    fmt.add_argument("--json", action="store_true", help="print a JSON list of rows")
    parser.set_defaults(func=run)


def build_rows(files: Sequence[str], reference: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """One ``{"name", "metrics", "dm", "trainable"}`` row per file; ``dm`` is None without a reference."""
    rows = []
    for path in files:
        result = load_results(path)
        try:
            dm = None if reference is None else multi_task_score(result["metrics"], reference)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        rows.append({"name": result["name"], "metrics": result["metrics"], "dm": dm, "trainable": result["trainable"]})
    return rows


def _task_header(spec: TaskSpec) -> str:
    unit = f" ({spec.unit})" if spec.unit else ""
    return f"{spec.name} {spec.headline}{unit} {'↑' if spec.higher_is_better else '↓'}"


def _number(value: float) -> str:
    """Two decimals, or four for small numbers such as the edge loss."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def format_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """Aligned text (or markdown) table: name, one column per task, then dm and trainable when known."""
    specs = [spec for name, spec in TASKS.items() if any(name in row["metrics"] for row in rows)]
    headers = ["name"] + [_task_header(spec) for spec in specs]
    cells = [[row["name"]] + [_number(row["metrics"][s.name]) if s.name in row["metrics"] else "-" for s in specs] for row in rows]
    if any(row["dm"] is not None for row in rows):
        headers.append("dm (%) ↑")
        for line, row in zip(cells, rows):
            line.append("-" if row["dm"] is None else f"{row['dm']:+.2f}")
    if any(row["trainable"] is not None for row in rows):
        headers.append("trainable (M)")
        for line, row in zip(cells, rows):
            line.append("-" if row["trainable"] is None else f"{row['trainable'] / 1e6:.2f}")
    if markdown:
        return "\n".join(
            ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
            + ["| " + " | ".join(line) + " |" for line in cells]
        )
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]

    def align(line: Sequence[str]) -> str:
        return "  ".join([line[0].ljust(widths[0])] + [text.rjust(w) for text, w in zip(line[1:], widths[1:])])

    return "\n".join([align(headers), align(["-" * w for w in widths])] + [align(line) for line in cells])


def run(args: argparse.Namespace) -> int:
    reference = resolve_reference(args.reference) if args.reference else None
    rows = build_rows(args.files, reference)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, markdown=args.markdown))
    return 0
