"""``vmt data``: dataset utilities (``export-synth`` writes SynthScenes in a benchmark's on-disk layout)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.check import check_dataset
from ..data.export import LAYOUTS, export_synth
from ..data.registry import folder_datasets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset utilities")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = actions.add_parser("export-synth", help="write SynthScenes as a PASCAL-Context or NYUD-v2 folder")
    e.add_argument("--out", type=Path, required=True, help="folder to write (created if needed)")
    e.add_argument("--num", type=int, required=True, help="number of samples, train and val together")
    e.add_argument("--size", type=int, required=True, help="image side in pixels")
    e.add_argument("--seed", type=int, default=0, help="SynthScenes stream (default 0)")
    e.add_argument("--layout", choices=tuple(LAYOUTS), default="pascal", help="on-disk format (default pascal)")
    e.add_argument("--val-fraction", type=float, default=0.2, help="share of samples in the val split (default 0.2)")
    e.add_argument("--overwrite", action="store_true", help="write into a non-empty folder, replacing its split files")
    c = actions.add_parser("check", help="check a PASCAL-Context or NYUD-v2 multi-task folder: ids, files, contents")
    c.add_argument("--root", type=Path, required=True, help="the dataset folder")
    c.add_argument("--dataset", choices=tuple(folder_datasets()), help="layout (default: detected from the folder)")
    c.add_argument("--deep", action="store_true", help="decode every file (default: an evenly spaced sample)")
    c.add_argument("--sample", type=int, default=50, help="samples decoded per split and task without --deep")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return check(args)
    ids = export_synth(args.out, args.num, args.size, args.seed, args.layout, args.val_fraction,
                       args.overwrite)
    print(f"wrote {len(ids['train'])} train and {len(ids['val'])} val samples ({args.layout} layout) to {args.out}")
    return 0


def check(args: argparse.Namespace) -> int:
    report = check_dataset(args.root, args.dataset, args.deep, args.sample)
    print(f"{args.root} ({report.dataset} layout{', every file' if args.deep else ', sampled'}):")
    print(report.table())
    if report.ok:
        print("no problem found")
        return 0
    print(f"{len(report.problems)} problem(s); the first {min(20, len(report.problems))}:")
    for line in report.problems[:20]:
        print(f"- {line}")
    return 1
