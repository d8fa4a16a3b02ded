"""``vmt pretrain``: dense upstream pretraining of a small backbone on SynthScenes' reserved range."""

from __future__ import annotations

import argparse
from ..engine.config import load_config
from ..engine.pretrain import pretrain
from .train import format_metrics



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a small backbone on SynthScenes' reserved range (dense targets)")
    p.add_argument("--config", default="synth-pretrain", help="pretraining config, a path or a shipped config's name "
                   "(default: synth-pretrain)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable)")
    p.add_argument("--steps", type=int, help="shorthand for --set train.steps=N")
    p.add_argument("--run", required=True, help="run directory of the pretraining (checkpoints, log, loss.png)")
    p.add_argument("--out", required=True, help="backbone weights file to write (.safetensors, fp16)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    cfg = load_config(args.config, overrides)
    result = pretrain(cfg, args.run, args.out, resume=args.resume, progress=not args.no_progress)
    if result is None:
        print(f"interrupted; continue with --resume --run {args.run}")
        return 130
    print(format_metrics(result["result"]))
    print(f"wrote {result['out']}; loss curve {result['loss_png']}")
    return 0
