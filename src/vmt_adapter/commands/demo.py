"""``vmt demo``: the whole pipeline on the embedded default (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.demo import run_demo
from .common import add_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train VMT-Adapter and the decoder-only baseline on SynthScenes, compare")
    p.add_argument("--out", default="runs/demo")
    add_overrides(p, "override a key of both runs' configs (e.g. train.steps=50 for a quick look)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), overrides=args.overrides, progress=not args.no_progress)
    return 0
