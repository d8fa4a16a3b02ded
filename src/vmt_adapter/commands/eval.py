"""``vmt eval``: evaluate a run's adapter on a split and write ``RUN_DIR/eval.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import distributed as ddp
from ..engine.evaluate import evaluate_split
from ..engine.results import eval_file_name, write_eval
from ..engine.runs import load_run
from ..engine.score import dataset_obstacle, reference_dataset
from ..errors import ConfigError
from .common import add_overrides
from .train import format_metrics


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run, write RUN_DIR/eval-SPLIT[-fullres].json")
    p.add_argument("--run", required=True, help="run directory (holds config.yaml and adapter.*)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the config's eval.split)")
    p.add_argument("--reference", default=None, help="dm reference: built-in name or results file")
    p.add_argument("--full-res", action="store_true", help="evaluate at the original image resolution")
    add_overrides(p, "override a key of the run's config (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    extra = [f"eval.reference={args.reference}"] if args.reference else []
    extra += ["eval.full_res=true"] if args.full_res else []
    cfg, model = load_run(run_dir, args.overrides + extra)
    why = dataset_obstacle(cfg.data.name, reference_dataset(cfg.eval.reference)) if cfg.eval.reference else None
    if why:  # as `vmt report` withholds it: a dm across datasets compares unlike things
        raise ConfigError(f"eval.reference {cfg.eval.reference!r}: {why}")
    split = args.split or cfg.eval.split
    info = ddp.setup(cfg.device)
    model.to(info.device)
    details = evaluate_split(model, model.tasks, cfg, split, info, progress=info.is_main)
    if info.is_main:
        name = eval_file_name(split, cfg.eval.full_res)
        result = write_eval(run_dir, model, details, cfg, step=-1, split=split, name=name)
        print(format_metrics(result))
        print(f"wrote {run_dir / name}")
    ddp.teardown(info)
    return 0
