"""``vmt export``: a trained run as one ONNX graph (input ``image``, one output per task), checked with onnxruntime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..data import build_dataset
from ..engine.runs import check_output_file, load_run
from ..reporting.export import OPSET, TOLERANCE, check_onnx, check_opset, export_onnx, latency


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run to ONNX and check it against PyTorch (needs [onnx])")
    p.add_argument("--run", required=True, help="run directory (holds config.yaml and adapter.*)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--fixed-size", action="store_true",
                   help="fix the input size to the run's data.size (default: any size; exports faster)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check on 3 validation images")
    p.add_argument("--latency", action="store_true",
                   help="also time one image: onnxruntime against PyTorch eager (median of 30, same CPU threads)")
    p.set_defaults(func=run)


def progress(message: str) -> None:
    """A line on stderr before each step that can take a while (the export itself takes minutes)."""
    print(f"vmt export: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, args.run, args.overwrite)  # before minutes of work, and never a run's own file
    check_opset(args.opset)
    progress(f"loading {args.run}")
    cfg, model = load_run(Path(args.run), [])
    progress(f"exporting to {args.out} (opset {args.opset}; this can take minutes)")
    info = export_onnx(model, args.out, cfg.data.size, dynamic_size=not args.fixed_size, opset=args.opset)
    shape = "any height and width" if info["dynamic_size"] else f"{cfg.data.size} x {cfg.data.size} only"
    print(f"wrote {info['path']}: opset {info['opset']}, {info['bytes'] / 2**20:.1f} MiB, input image "
          f"(batch, 3, height, width) with any batch, {shape}; outputs {', '.join(info['tasks'])} "
          f"({info['export_s']:.0f} s)")
    if args.no_check and not args.latency:
        return 0
    data = build_dataset(cfg.data.name, cfg.data.root, cfg.eval.split, cfg.tasks, cfg.data.size, train=False,
                         num=3, cache_dir=cfg.data.cache_dir)
    images = torch.stack([data[i]["image"] for i in range(min(3, len(data)))])
    worst = 0.0
    if not args.no_check:
        progress("checking onnxruntime against PyTorch on 3 images")
        diffs = check_onnx(args.out, model, images)
        worst = max(diffs.values())
        print("onnxruntime vs PyTorch on 3 images, largest |difference|: "
              + ", ".join(f"{t} {d:.2e}" for t, d in diffs.items())
              + f" ({'within' if worst <= TOLERANCE else 'ABOVE'} {TOLERANCE:g})")
    if args.latency:
        progress("timing one image, onnxruntime against PyTorch")
        t = latency(args.out, model, images)
        print(f"latency per image ({t['threads']} threads, median of {t['repeats']}): onnxruntime "
              f"{t['onnxruntime_ms']:.1f} ms, PyTorch eager {t['pytorch_ms']:.1f} ms")
    return 0 if worst <= TOLERANCE else 1
