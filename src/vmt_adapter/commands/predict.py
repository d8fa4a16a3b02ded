"""``vmt predict``: per-task prediction images, label-index PNGs and a panel per input image."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.labels import class_names
from ..device import pick_device
from ..engine.runs import load_run
from ..kinds import kind_of
from ..reporting.predict import predict_files


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict every task on image files")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("images", nargs="+", help="image files (any mode PIL reads; converted to RGB)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=None,
                   help="write SIZE x SIZE outputs (default: each input image's own resolution)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg, model = load_run(Path(args.run), [])
    names = {spec.name: class_names(cfg.data.name, spec) for spec in model.tasks if kind_of(spec).class_ids}
    panels = predict_files(model.to(pick_device(args.device)), [Path(p) for p in args.images], Path(args.out),
                           args.size, names)
    for p in panels:
        print(p)
    return 0
