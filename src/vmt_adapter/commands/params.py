"""``vmt params``: trainable / frozen parameter counts of a method on a backbone (no weights needed)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from ..data import dataset_channels
from ..engine.config import config_names, load_config
from ..errors import ConfigError
from ..models.adapters import METHODS
from ..models.factory import ModelConfig, build_model
from ..models.published import PUBLISHED_BACKBONE, PUBLISHED_COUNTS, PUBLISHED_TASKS
from ..reporting.report import render_table
from ..tasks import resolve_tasks

FIELDS = ("adapter", "adapter_task_specific", "decoders", "other_trainable", "trainable", "frozen")
PUBLISHED_FIELDS = ("published", "published_scope", "published_source", "published_vs", "published_constant",
                    "ours_same_scope")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="count adapter, decoder, trainable and frozen parameters")
    p.add_argument("--backbone", default="swin_tiny")
    p.add_argument("--method", default="vmt", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--all", action="store_true", help="one row per method")
    p.add_argument("--tasks", default="semseg,human_parts,sal,normals")
    p.add_argument("--bottleneck", type=int, default=None,
                   help="bottleneck k of the methods that have one (vmt, vmt-lite; default 128)")
    p.add_argument("--config", default=None,
                   help="count the model a run config describes (its tasks and model section) instead")
    p.add_argument("--published", action="store_true",
                   help="every method as its PASCAL config (configs/pascal-swin-t-<method>.yaml) builds it, beside "
                        "the published figure, its scope and source")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def count(backbone: str, method: str, tasks: str, bottleneck: int | None = None) -> dict:
    """Our counts for the method's default settings (no published figure: those need the PASCAL settings)."""
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: choose from {', '.join(METHODS)}")
    has_k = "bottleneck" in {f.name for f in fields(METHODS[method].config_class)}
    spec = ModelConfig(backbone=backbone, method=method,
                       hparams={"bottleneck": bottleneck} if bottleneck is not None and has_k else {})
    model = build_model(spec, resolve_tasks(tasks))
    return {"method": method, "backbone": backbone, "tasks": model.task_names, **model.parameter_counts()}


def config_counts(config: str) -> dict:
    """The model of a run config, its layout, and the published figure where it is a Swin-T PASCAL model."""
    cfg = load_config(config, ["data.root=unused"])  # counting reads no data: a placeholder root
    model = build_model(cfg.model, resolve_tasks(cfg.tasks, dataset_channels(cfg.data.name)))
    row = {"method": model.method.name, "backbone": model.base.backbone, "tasks": model.task_names,
           **model.parameter_counts(), "taps": model.taps, "tap_norm": model.decoder_spec.tap_norm,
           "decoder": model.decoder_spec.name, "hparams": model.method.hparams()}
    comparable = row["backbone"] == PUBLISHED_BACKBONE and tuple(row["tasks"]) == PUBLISHED_TASKS
    pub = PUBLISHED_COUNTS.get(row["method"]) if comparable else None
    if pub is None:
        return row | dict.fromkeys(PUBLISHED_FIELDS)
    return row | {"published": pub.params, "published_scope": pub.scope, "published_source": pub.source,
                  "published_vs": pub.field, "published_constant": pub.constant,
                  "ours_same_scope": row[pub.field] + pub.constant}


def counts_table(rows: list[dict]) -> str:
    """One row per method; where a published figure exists, ours of the same scope (and constant) follows
    it, and each figure's scope and source are listed under the table."""
    with_pub = any("published" in r for r in rows)
    cells, notes = [], []
    for r in rows:
        line = [r["method"]] + [f"{r[f]:,} ({r[f] / 1e6:.2f} M)" for f in FIELDS]
        if with_pub:
            plus = f" + {r['published_constant'] / 1e6:.2f} M unexplained" if r.get("published_constant") else ""
            line.append("-" if r["published"] is None else f"{r['published'] / 1e6:.2f} M vs ours "
                        f"{r[r['published_vs']] / 1e6:.2f} M{plus} = {r['ours_same_scope'] / 1e6:.2f} M")
            if r["published"] is not None:
                notes.append(f"- {r['method']}: {r['published_scope']} ({r['published_source']})")
        cells.append(line)
    table = render_table(["method", *FIELDS] + (["published vs ours, same scope"] if with_pub else []), cells)
    return "\n".join([table, *notes])


def run(args: argparse.Namespace) -> int:
    if args.config or args.published:
        shipped = set(config_names())  # --published: every method with a PASCAL config (a new method may have none)
        names = [args.config] if args.config else [f"pascal-swin-t-{m}" for m in METHODS
                                                   if f"pascal-swin-t-{m}" in shipped]
        rows = [config_counts(c) for c in names]
        print(json.dumps(rows if args.published else rows[0], indent=2) if args.json else counts_table(rows))
        return 0
    methods = list(METHODS) if args.all else [args.method]
    rows = [count(args.backbone, m, args.tasks, args.bottleneck) for m in methods]
    if args.json:
        print(json.dumps(rows if args.all else rows[0], indent=2))
    else:
        print(f"backbone {args.backbone}, tasks {','.join(rows[0]['tasks'])}, each method's default settings "
              "(the published figures beside the PASCAL configs' counts: vmt params --published)")
        print(counts_table(rows))
    return 0
