"""``vmt train``: train a method from a YAML config (resumable, DDP-ready under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.config import load_config
from ..engine.train import add_task_overrides, resume_config, train
from ..errors import ConfigError
from .common import add_overrides, overrides_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train adapters and decoders from a config")
    p.add_argument("--config",
                   help="YAML config: a path or a shipped config's name (synth-vmt, pascal-swin-t-vmt, ...); "
                        "with --resume defaults to RUN_DIR/config.yaml")
    add_overrides(p, "override any config key, e.g. --set data.root=/data/PASCAL_MT (repeatable)", steps=True)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--from", dest="from_run", metavar="RUN",
                   help="start from RUN's trained adapter and train only the tasks of --add-tasks")
    p.add_argument("--add-tasks", metavar="TASKS", help="comma-separated tasks to add to --from RUN (e.g. depth,edge)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = args.config
    if config is None and args.resume:
        config = resume_config(Path(args.out))
    if bool(args.from_run) != bool(args.add_tasks):
        raise ConfigError("--from RUN and --add-tasks TASKS go together")
    grow = add_task_overrides(args.from_run, args.add_tasks.split(",")) if args.from_run else []
    overrides = grow + overrides_of(args)
    cfg = load_config(config, overrides)
    trainer = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if trainer.interrupted:
        return 128 + trainer.stop_signal  # stopped by a signal after saving a checkpoint
    if trainer.result is not None:
        print(format_metrics(trainer.result))
    return 0


def format_metrics(result: dict) -> str:
    parts = [f"{k} {v:.2f}" for k, v in result["metrics"].items() if v is not None]
    dm = f", dm {result['dm']:+.2f} %" if result.get("dm") is not None else ""
    return f"{result['name']} ({result['method']}): " + ", ".join(parts) + dm + \
        f"; trainable {result['params']['trainable']:,}"
