"""``vmt report``: results files side by side, with the multi-task score against a reference."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..engine.config import load_config
from ..engine.prior import prior_result
from ..engine.score import REFERENCES, reference_dataset, resolve_reference
from ..reporting.report import (
    add_run_details,
    build_rows,
    footnotes,
    format_per_class,
    format_provenance,
    format_table,
    rows_of_results,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="tabulate results files and their multi-task score",
        description="One row per results file (a run's eval.json, or {\"name\", \"metrics\": {task: headline}}); "
        "with --reference, dm % = 100/T sum_t s_t (M_t - M_ref,t) / M_ref,t over the tasks both report.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE|RUN",
                        help="results JSON files, or run folders (their eval.json)")
    parser.add_argument(
        "--reference",
        metavar="NAME|RUN|FILE",
        help=f"single-task reference for dm: built-in {', '.join(REFERENCES)} (the Polyhistor-line single-task "
        "row), your own st-full run folder, or a results file",
    )
    parser.add_argument("--prior", action="store_true",
                        help="add a 'prior' row: the best constant prediction per task on the evaluation split of "
                        "the first file's run (its config.yaml beside it)")
    parser.add_argument("--per-class", action="store_true",
                        help="also print each file's per-class IoU of the label-map tasks (semseg, human_parts)")
    parser.add_argument("--provenance", action="store_true",
                        help="also print what produced each run (its run.json: commit, versions, device, machine, "
                        "command, start and resumes)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print a markdown table")
    fmt.add_argument("--json", action="store_true", help="print a JSON list of rows")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reference = resolve_reference(args.reference) if args.reference else None
    ref_dataset = reference_dataset(args.reference) if args.reference else None
    rows = build_rows(args.files, reference, ref_dataset)
    add_run_details(rows, args.files, args.per_class, args.provenance)
    if args.prior:
        first = Path(args.files[0])
        config = (first if first.is_dir() else first.parent) / "config.yaml"
        rows += rows_of_results([prior_result(load_config(config))], reference, ref_dataset=ref_dataset)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, markdown=args.markdown, reference=args.reference))
    notes = footnotes(rows)
    if notes:
        print("\n" + notes)
    if args.per_class:
        print("\n" + format_per_class(rows, markdown=args.markdown))
    if args.provenance:
        print("\n" + format_provenance(rows))
    return 0
