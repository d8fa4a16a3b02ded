"""``vmt pretrain``: upstream pretraining of a small backbone (image-level SynthStudio by default, or
the earlier dense SynthScenes recipe with ``--config synth-pretrain``)."""

from __future__ import annotations

import argparse

from ..engine.config import RunConfig, read_tree, validate
from ..engine.runs import check_output_file
from ..experiments.pretrain import pretrain
from ..experiments.upstream import is_upstream, load_upstream_config, pretrain_upstream
from ..typed import build
from .common import add_overrides, overrides_of
from .train import format_metrics


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a small backbone for the embedded benchmark (SynthStudio: "
                       "masked image modelling + image classification)")
    p.add_argument("--config", default="synth-upstream", help="pretraining config, a path or a shipped config's "
                   "name (default: synth-upstream; synth-pretrain is the earlier dense recipe)")
    add_overrides(p, steps=True)
    p.add_argument("--run", required=True, help="run directory of the pretraining (checkpoints, log, loss.png)")
    p.add_argument("--out", required=True, help="backbone weights file to write (.safetensors, fp16)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = overrides_of(args)
    tree = read_tree(args.config, overrides)
    check_output_file(args.out, args.run, args.overwrite, new_folder=True)  # before hours of work
    if is_upstream(tree):
        result = pretrain_upstream(load_upstream_config(tree), args.run, args.out, resume=args.resume,
                                   progress=not args.no_progress)
    else:
        result = pretrain(validate(build(RunConfig, tree)), args.run, args.out, resume=args.resume,
                          progress=not args.no_progress)
    if result is None:
        print(f"interrupted; continue with --resume --run {args.run}")
        return 130
    r = result["result"]
    if is_upstream(tree):
        print(f"held-out top-1 {r['top1']:.2f} % (prior {r['top1_prior']:.2f} %), masked-pixel L1 "
              f"{r['mim_l1']:.4f} (prior {r['mim_l1_prior']:.4f})")
    else:
        print(format_metrics(r))
    print(f"wrote {result['out']}; loss curve {result['loss_png']}")
    return 0
