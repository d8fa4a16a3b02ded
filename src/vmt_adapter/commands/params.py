"""``vmt params``: trainable / frozen parameter counts of a method on a backbone (no weights needed)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from ..data import dataset_channels
from ..engine.config import load_config
from ..engine.report import render_table
from ..models.adapters import METHODS
from ..models.factory import ModelConfig, build_model
from ..models.multitask import MultiTaskModel
from ..models.published import PUBLISHED_BACKBONE, PUBLISHED_COUNTS
from ..tasks import resolve_tasks

FIELDS = ("adapter", "adapter_task_specific", "decoders", "other_trainable", "trainable", "frozen")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="count adapter, decoder, trainable and frozen parameters")
    p.add_argument("--backbone", default="swin_tiny")
    p.add_argument("--method", default="vmt", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--all", action="store_true", help="one row per method")
    p.add_argument("--tasks", default="semseg,human_parts,sal,normals")
    p.add_argument("--bottleneck", type=int, default=None, help="bottleneck k of the methods that have one (vmt, vmt-lite; default 128)")
    p.add_argument("--config", default=None,
                   help="count the model a run config describes (its tasks and model section) instead")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def count(backbone: str, method: str, tasks: str, bottleneck: int | None = None) -> dict:
    """Our counts, plus the published figure and its scope where a paper gives one (else None)."""
    has_k = "bottleneck" in {f.name for f in fields(METHODS[method].config_class)}
    spec = ModelConfig(backbone=backbone, method=method,
                       hparams={"bottleneck": bottleneck} if bottleneck is not None and has_k else {})
    return counts_of(build_model(spec, resolve_tasks(tasks)))


def counts_of(model: MultiTaskModel) -> dict:
    backbone, method = model.backbone_name, model.method.name
    pub = PUBLISHED_COUNTS.get(method) if backbone == PUBLISHED_BACKBONE else None  # the papers' figures are Swin-T's
    return {"method": method, "backbone": backbone, "tasks": model.task_names, **model.parameter_counts(),
            "published": pub.params if pub else None, "published_scope": pub.scope if pub else None,
            "published_source": pub.source if pub else None, "published_vs": pub.field if pub else None}


def format_table(rows: list[dict]) -> str:
    """One row per method; the published figure is followed by our count of the same scope."""
    cells = []
    for r in rows:
        line = [r["method"]] + [f"{r[f]:,} ({r[f] / 1e6:.2f} M)" for f in FIELDS]
        line.append("-" if r["published"] is None else
                    f"{r['published'] / 1e6:.2f} M ({r[r['published_vs']] / 1e6:.2f} M {r['published_vs']}; "
                    f"{r['published_scope']})")
        cells.append(line)
    return render_table(["method", *FIELDS, "published (ours, same scope; scope)"], cells)


def run(args: argparse.Namespace) -> int:
    if args.config:
        cfg = load_config(args.config, ["data.root=unused"])  # counting reads no data: a placeholder root
        model = build_model(cfg.model, resolve_tasks(cfg.tasks, dataset_channels(cfg.data.name)))
        row = counts_of(model) | {"taps": model.taps, "tap_norm": model.tap_norm, "decoder": model.decoder_name}
        print(json.dumps(row, indent=2) if args.json else format_table([row]))
        return 0
    methods = list(METHODS) if args.all else [args.method]
    rows = [count(args.backbone, m, args.tasks, args.bottleneck) for m in methods]
    if args.json:
        print(json.dumps(rows if args.all else rows[0], indent=2))
    else:
        print(f"backbone {args.backbone}, tasks {','.join(rows[0]['tasks'])}")
        print(format_table(rows))
    return 0
