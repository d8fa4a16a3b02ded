"""``vmt pretrain``: upstream multi-label pretraining of a small backbone on SynthScenes."""

from __future__ import annotations

import argparse

from ..engine.pretrain import pretrain


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a small backbone on SynthScenes' reserved range")
    p.add_argument("--backbone", default="swin_nano")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--num", type=int, default=4000, help="number of pretraining scenes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = pretrain(args.out, args.backbone, args.size, args.num, args.steps, args.batch_size, args.lr,
                      seed=args.seed)
    print(f"wrote {result['out']} in {result['seconds']:.0f} s; final loss {result['final_loss']:.3f}, "
          f"label accuracy {result['final_label_acc']:.3f}")
    return 0
