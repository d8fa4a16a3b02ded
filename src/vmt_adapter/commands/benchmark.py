"""``vmt benchmark``: train every method under one budget on a suite and tabulate quality and cost."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import ConfigError
from ..experiments.suite import SUITES, run_benchmark
from ..experiments.sweep import load_selection
from ..models.adapters import METHODS
from .common import add_overrides, overrides_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="train every method under one budget and seed, write a results table",
                       description="Trains each method (default: all) on the suite's config with only model.method "
                       "changed, evaluates, and writes OUT/results.json and OUT/results.md (per-task metrics, dm vs "
                       "st-full, trainable parameters, wall time, peak memory). Finished methods are reused, "
                       "half-finished ones resumed.")
    p.add_argument("--suite", choices=list(SUITES), default="synth")
    p.add_argument("--out", default=None, help="benchmark directory (default: runs/benchmark-SUITE)")
    p.add_argument("--methods", help=f"comma-separated, default all: {','.join(METHODS)}")
    add_overrides(p, "override a config key for every method (repeatable)", steps=True)
    p.add_argument("--seeds", type=int, default=1, help="train every method with seeds 0..N-1 (default 1); "
                   "the table gives mean ± std over them")
    p.add_argument("--jobs", type=int, default=1, help="methods trained at once, each in its own process with "
                   "its share of the cores (default 1)")
    p.add_argument("--lr-from", help="a sweep.json of `vmt sweep`: train each method at its selected learning rate")
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate the runs that have finished")
    p.add_argument("--no-subprocess", action="store_true",
                   help="train in this process (faster start; CPU peak memory is then not measured)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace, out: str) -> str:
    """The invocation with every option explicit, for the report (same effect as what was typed)."""
    parts = ["vmt", "benchmark", "--suite", args.suite, "--out", out]
    parts += ["--steps", str(args.steps)] if args.steps is not None else []
    parts += ["--methods", args.methods] if args.methods else []
    parts += ["--seeds", str(args.seeds)] if args.seeds != 1 else []
    parts += ["--jobs", str(args.jobs)] if args.jobs != 1 else []
    parts += ["--lr-from", args.lr_from] if args.lr_from else []
    for item in args.overrides:
        parts += ["--set", item]
    parts += ["--no-subprocess"] * args.no_subprocess
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    out = args.out or f"runs/benchmark-{args.suite}"
    overrides = overrides_of(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    rows = run_benchmark(args.suite, Path(out), methods, overrides, isolated=not args.no_subprocess,
                         progress=not args.no_progress, command=command_line(args, out),
                         seeds=list(range(args.seeds)), jobs=args.jobs, train=not args.report_only,
                         lrs=load_selection(Path(args.lr_from)) if args.lr_from else None)
    return 1 if any(row["error"] for row in rows) else 0  # the table is written either way
