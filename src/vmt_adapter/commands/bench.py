"""``vmt bench``: time and memory of each method's backbone pass as the number of tasks grows."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..device import PRECISIONS
from ..errors import ConfigError
from ..experiments.speed import BenchConfig, add_ratios, bench_table, benchmark_names, plot, run_bench


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure forward / forward+backward time and peak memory against T")
    p.add_argument("--backbone", default="swin_nano")
    p.add_argument("--size", type=int, default=None, help="input side in pixels (default: the backbone's)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--tasks", default="1,2,4,8", help="comma-separated task counts T")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, default all: {', '.join(benchmark_names())}")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before each measurement")
    p.add_argument("--compile", action="store_true", help="torch.compile the stages and decoders (slow to start)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is steadier on a busy machine")
    p.add_argument("--channels-last", action="store_true", help="channels-last input and conv weights")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="add rows for every one-pass method with gradient checkpointing (train.grad_checkpointing)")
    p.add_argument("--taps", default="stage", help="decoder inputs, as model.taps: stage, or merged (Swin: after "
                   "the next patch merging, as the public code)")
    p.add_argument("--no-tap-norm", action="store_true",
                   help="decoders without the per-tap channel norm (model.tap_norm: false), which lets VMT's "
                        "up-projection fold into their first conv")
    p.add_argument("--unfolded", action="store_true",
                   help="with --no-tap-norm: add rows for VMT with the fold switched off (dense task streams)")
    p.add_argument("--per-level", action="store_true",
                   help="add rows with the decoders' first conv at each level's resolution (model.decoder_fusion: "
                        "per_level)")
    p.add_argument("--json", type=Path, default=None, help="write the rows as a JSON list")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of time against T")
    p.set_defaults(func=run)


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise ConfigError(f"--tasks takes comma-separated task counts such as 1,2,4,8, got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    cfg = BenchConfig(
        backbone=args.backbone, size=args.size, batch=args.batch, task_counts=parse_counts(args.tasks),
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else (),
        device=args.device, precision=args.precision, repeats=args.repeats, warmup=args.warmup,
        compile=args.compile, channels_last=args.channels_last, grad_checkpointing=args.grad_checkpointing,
        taps=args.taps, tap_norm=not args.no_tap_norm, unfolded=args.unfolded, per_level=args.per_level,
    )
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    rows = add_ratios(run_bench(cfg, log=lambda msg: print(f"vmt bench: {msg}", file=sys.stderr, flush=True)))
    r0 = rows[0]
    print(f"backbone {r0['backbone']}, {r0['size']} px, batch {r0['batch']}, device {r0['device']}, "
          f"{r0['precision']}, {r0['threads']} threads, median of {r0['repeats']} after {r0['warmup']} warm-up, "
          "load " + " -> ".join("?" if v is None else f"{v:.2f}" for v in (r0["load_1min_start"], r0["load_1min_end"])))
    print(bench_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.plot:
        plot(rows, args.plot)
    return 0
