"""``vmt sweep``: the learning-rate selection of the benchmark (one grid, one seed, the held-out ``select`` split)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import ConfigError
from ..experiments.suite import SUITES
from ..experiments.sweep import GRID, run_sweep
from ..models.adapters import METHODS
from .common import add_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="choose each method's learning rate on a held-out part of train",
                       description="Trains each method (default: all) once per learning rate of the grid (seed 0, "
                       "the suite's budget), evaluates on SynthScenes' select split (held out of train; never val), "
                       "and writes OUT/sweep.json and OUT/sweep.md with the rate of the highest dm against the "
                       "prior. Finished runs are reused, half-finished ones resumed. `vmt benchmark --lr-from "
                       "OUT/sweep.json` then uses the selection.")
    p.add_argument("--suite", choices=list(SUITES), default="synth")
    p.add_argument("--out", default=None, help="sweep directory (default: runs/sweep-SUITE)")
    p.add_argument("--methods", help=f"comma-separated, default all: {','.join(METHODS)}")
    p.add_argument("--lrs", help=f"comma-separated learning rates (default {','.join(f'{v:g}' for v in GRID)})")
    add_overrides(p, "override a config key for every run (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process (default 1)")
    p.add_argument("--report-only", action="store_true", help="train nothing: select from the finished runs")
    p.add_argument("--no-subprocess", action="store_true", help="train in this process (faster start)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _rates(text: str | None) -> list[float]:
    if not text:
        return list(GRID)
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--lrs: expected comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    out = args.out or f"runs/sweep-{args.suite}"
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    parts = (["vmt", "sweep", "--suite", args.suite, "--out", out]
             + (["--methods", args.methods] if args.methods else []))
    parts += (["--lrs", args.lrs] if args.lrs else []) + (["--jobs", str(args.jobs)] if args.jobs != 1 else [])
    for item in args.overrides:
        parts += ["--set", item]
    summary = run_sweep(args.suite, Path(out), methods, _rates(args.lrs), args.overrides, args.jobs,
                        not args.no_progress, shlex.join(parts), train=not args.report_only,
                        isolated=not args.no_subprocess)
    return 0 if len(summary["selected"]) == len(methods or METHODS) else 1
