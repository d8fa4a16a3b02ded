#!/usr/bin/env python
"""Side-by-side CPU timing: the public reference MTLoRA model (github scale-lab/MTLoRA, exported to
./MTLoRA) against the project's models (vmt_adapter), in ONE process, cases interleaved round-robin.

Run with the project's venv, after exporting the reference code beside this file (README.md):
    .venv/bin/python tools/mtlora_side_by_side/side_by_side.py --json out.json
README.md (same folder) lists every stub and shim applied to the reference code.
"""

from __future__ import annotations

import contextlib
import os
import sys

sys.dont_write_bytecode = True  # never write .pyc files next to the project or reference sources

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import argparse
import io
import json
import platform
import statistics
import sys
import time
import types
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REF_DIR = os.path.join(HERE, "MTLoRA")
DEPS_DIR = os.path.join(HERE, "deps")
REF_CFG = os.path.join(REF_DIR, "configs/mtlora/tiny_448/mtlora_tiny_448_r64_scale4_pertask.yaml")
TASKS = "semseg,human_parts,sal,normals"
PAPER_TRAINABLE = 8_344_634

import torch

torch.set_num_threads(1)
with contextlib.suppress(RuntimeError):
    torch.set_num_interop_threads(1)


# ----------------------------------------------------------------------------------------------
# Reference model (scale-lab/MTLoRA), with import shims only (see README.md)
# ----------------------------------------------------------------------------------------------

def install_reference_shims() -> None:
    """Make the reference code importable without its data stack; no shim touches model math."""
    for p in (DEPS_DIR, REF_DIR):  # deps: yacs, easydict, termcolor, ptflops, imageio (pip --target)
        if p not in sys.path:
            sys.path.insert(0, p)
    # cv2 (OpenCV) is used only for interpolation-flag constants in data/mtl_ds.get_tasks_config
    # and by data/ utils code that we never call. OpenCV's values: NEAREST=0, LINEAR=1, CUBIC=2.
    if "cv2" not in sys.modules:
        cv2 = types.ModuleType("cv2")
        cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC = 0, 1, 2
        cv2.__shim__ = True
        sys.modules["cv2"] = cv2
    # skimage.morphology.thin: used only by the edge dataset code (never called here).
    if "skimage" not in sys.modules:
        sk = types.ModuleType("skimage")
        morph = types.ModuleType("skimage.morphology")

        def thin(*a, **k):
            raise NotImplementedError("skimage shim: thin() is not available")

        morph.thin = thin
        sk.morphology = morph
        sys.modules["skimage"], sys.modules["skimage.morphology"] = sk, morph
    # The `data` package: register it without running data/__init__.py (which imports every data
    # loader: simmim, imagenet22k zip reader, ...); only data/mtl_ds.get_tasks_config is used.
    if "data" not in sys.modules:
        pkg = types.ModuleType("data")
        pkg.__path__ = [os.path.join(REF_DIR, "data")]
        sys.modules["data"] = pkg


def reference_window(size: int) -> int:
    """Largest Swin window <= 7 that the reference code's fixed-shape window partition accepts at
    ``size`` (every stage resolution divisible by it, or no larger than it); 7 at 224 and 448."""
    if size % 32:
        raise SystemExit(f"--size {size}: the reference Swin needs a multiple of 32")
    res = [size // 4 // 2 ** i for i in range(4)]
    for w in range(7, 0, -1):
        if all(r <= w or r % w == 0 for r in res):
            return w
    return 1


def build_reference(size: int, window: int | None, quiet: bool = True):
    """The reference model as main.py builds it: config.get_config(args) from the yaml +
    --tasks/--pascal, models.build_model + build_mtl_model, then mark_only_lora_as_trainable on the
    backbone with main.py's arguments. No checkpoint is loaded (random init)."""
    install_reference_shims()
    window = window or reference_window(size)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from config import get_config
        from models import build_model as ref_build_model
        from models import build_mtl_model
        from models.lora import mark_only_lora_as_trainable

        args = argparse.Namespace(cfg=REF_CFG, tasks=TASKS, pascal="unused-no-data", local_rank=0,
                                  opts=["DATA.IMG_SIZE", str(size), "MODEL.SWIN.WINDOW_SIZE", str(window)])
        config = get_config(args)
        model = ref_build_model(config)
        model = build_mtl_model(model, config)
        # main.py: MTLORA.ENABLED and FREEZE_PRETRAINED -> only LoRA (+ its filters) trainable in the backbone
        if config.MODEL.MTLORA.ENABLED and config.MODEL.MTLORA.FREEZE_PRETRAINED:
            mark_only_lora_as_trainable(
                model.backbone, bias=config.MODEL.MTLORA.BIAS,
                freeze_patch_embed=config.TRAIN.FREEZE_PATCH_EMBED,
                freeze_norm=config.TRAIN.FREEZE_LAYER_NORM,
                free_relative_bias=config.TRAIN.FREEZE_RELATIVE_POSITION_BIAS,
                freeze_downsample_reduction=True if config.MODEL.MTLORA.DOWNSAMPLER_ENABLED
                else config.TRAIN.FREEZE_DOWNSAMPLE_REDUCTION)
    info = dict(window=window, num_outputs=dict(config.TASKS_CONFIG.ALL_TASKS.NUM_OUTPUT),
                drop_path_rate=config.MODEL.DROP_PATH_RATE, lora_dropout=list(config.MODEL.MTLORA.DROPOUT),
                decoder_channels=list(config.MODEL.DECODER_CHANNELS))
    return model, info


# ----------------------------------------------------------------------------------------------
# Project models (vmt_adapter)
# ----------------------------------------------------------------------------------------------

PROJECT_CASES = {
    "project-mtlora": ("mtlora", {"rank": 64, "shared_scale": 4.0, "task_rank": 4, "task_scale": 4.0,
                                  "last_shared_fc2": True}),
    "project-vmt": ("vmt", {"bottleneck": 128}),
    "project-decoder-only": ("decoder-only", {}),
}


def import_project():
    from vmt_adapter.device import step_peak_memory_mb
    from vmt_adapter.models.factory import ModelConfig, build_model
    from vmt_adapter.tasks import resolve_tasks
    return ModelConfig, build_model, resolve_tasks, step_peak_memory_mb


def build_project(name: str, size: int, backbone_train: bool = True):
    """With ``backbone_train`` the project model trains as the reference does (and as its PASCAL configs
    say): drop-path 0.2 in a backbone in train mode, MTLoRA's LoRA dropout 0.05."""
    ModelConfig, build_model, resolve_tasks, _ = import_project()
    method, hparams = PROJECT_CASES[name]
    hparams = dict(hparams, **({"dropout": 0.05} if backbone_train and method == "mtlora" else {}))
    tasks = resolve_tasks(TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(ModelConfig(backbone="swin_tiny", method=method, taps="merged", tap_norm=False,
                                        drop_path=0.2, backbone_train_mode=backbone_train, hparams=hparams),
                            tasks, img_size=size)
    return model


def counts(model) -> dict:
    out = dict(trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
               total=sum(p.numel() for p in model.parameters()))
    if hasattr(model, "parameter_counts"):
        out["project_parameter_counts"] = model.parameter_counts()
    return out


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------

def infer_fn(model, x):
    def fn():
        with torch.no_grad():
            out = model(x)
        return out
    return fn


def train_fn(model, x):
    def fn():
        out = model(x)
        loss = sum(o.float().mean() for o in out.values())
        loss.backward()
        return None
    return fn


def set_mode(model, mode: str):
    if mode == "infer":
        model.eval()
    else:
        model.train()
        if getattr(model, "_ref_backbone_eval", False):
            model.backbone.eval()


def zero_grads(model):
    model.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batches", default="1,2")
    ap.add_argument("--json", default="")
    ap.add_argument("--cases", default="reference-mtlora," + ",".join(PROJECT_CASES),
                    help="comma list, subset of the default")
    ap.add_argument("--ref-window", type=int, default=0,
                    help="reference Swin window (0: 7 where the size allows, else the largest that fits)")
    ap.add_argument("--backbone-mode", choices=("train", "eval"), default="train",
                    help="the backbones during training steps, the same for every case: train (main.py's "
                         "train(): drop-path 0.2, LoRA dropout 0.05; the project's model.backbone_train_mode) "
                         "or eval (no drop-path, no dropout: the project's default for a frozen backbone)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-param-check", action="store_true",
                    help="skip building the reference and project-mtlora at 448 for the parameter check")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",") if b]
    names = [c for c in a.cases.split(",") if c]
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    _, _, _, step_peak_memory_mb = import_project()

    # ---- build
    models, build_s, ref_info = {}, {}, None
    for name in names:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        if name == "reference-mtlora":
            m, ref_info = build_reference(a.size, a.ref_window or None)
            m._ref_backbone_eval = a.backbone_mode == "eval"
        elif name in PROJECT_CASES:
            m = build_project(name, a.size, a.backbone_mode == "train")
        else:
            raise SystemExit(f"unknown case {name!r}")
        build_s[name] = time.perf_counter() - t0
        models[name] = m
    params = {n: counts(m) for n, m in models.items()}

    # ---- parameter check at 448 (construction only; the relative-position tables depend on the window)
    param_check = {}
    if not a.no_param_check:
        for name in ("reference-mtlora", "project-mtlora"):
            if a.size == 448 and name in models:
                c = params[name]
            else:
                torch.manual_seed(0)
                m = build_reference(448, None)[0] if name == "reference-mtlora" else build_project(name, 448)
                c = counts(m)
                del m
            param_check[name] = dict(trainable_at_448=c["trainable"], total_at_448=c["total"],
                                     matches_paper_8344634=c["trainable"] == PAPER_TRAINABLE)

    # ---- inputs and output-shape sanity
    gen = torch.Generator().manual_seed(1)
    inputs = {b: torch.randn(b, 3, a.size, a.size, generator=gen) for b in batches}
    shapes = {}
    for n, m in models.items():
        m.eval()
        with torch.no_grad():
            out = m(inputs[batches[0]])
        shapes[n] = {k: list(v.shape) for k, v in out.items()}

    # ---- timing: per measurement, rounds over all cases (order rotated each round)
    measures = [("infer", b) for b in batches] + [("train", b) for b in batches]
    raw = {n: {} for n in names}
    for mode, b in measures:
        key = f"{mode}_b{b}_ms"
        for n in names:
            raw[n][key] = []
        x = inputs[b]
        for rnd in range(a.warmup + a.repeats):
            order = names[rnd % len(names):] + names[: rnd % len(names)]
            for n in order:
                m = models[n]
                set_mode(m, mode)
                fn = infer_fn(m, x) if mode == "infer" else train_fn(m, x)
                zero_grads(m)
                t0 = time.perf_counter()
                fn()
                dt = (time.perf_counter() - t0) * 1000.0
                zero_grads(m)
                if rnd >= a.warmup:
                    raw[n][key].append(dt)

    # ---- peak tensor memory of one training step at batch 1 (profiler replay, the project's function)
    memory = {}
    if not a.no_memory:
        x1 = inputs[1] if 1 in inputs else torch.randn(1, 3, a.size, a.size, generator=gen)
        for n in names:
            m = models[n]
            set_mode(m, "train")
            zero_grads(m)
            memory[n] = step_peak_memory_mb(torch.device("cpu"), train_fn(m, x1))
            zero_grads(m)

    medians = {n: {k: statistics.median(v) for k, v in raw[n].items()} for n in names}
    for n in memory:
        medians[n]["train_b1_peak_mb"] = memory[n]
    ratios = {}
    if "reference-mtlora" in names:
        for n in names:
            if n == "reference-mtlora":
                continue
            ratios[f"reference/{n}"] = {k: medians["reference-mtlora"][k] / v for k, v in medians[n].items() if v}
    load_end = os.getloadavg()
    total_s = time.perf_counter() - t_start

    # ---- report
    import timm
    cols = [f"infer_b{b}_ms" for b in batches] + [f"train_b{b}_ms" for b in batches] + (
        [] if a.no_memory else ["train_b1_peak_mb"])
    w = max(len(n) for n in list(names) + list(ratios)) + 2
    print(f"\nsize {a.size}  repeats {a.repeats}  warmup {a.warmup}  threads {torch.get_num_threads()}  "
          f"torch {torch.__version__}  timm {timm.__version__}  load {load_start[0]:.2f} -> {load_end[0]:.2f}")
    print("medians".ljust(w) + "".join(c.rjust(17) for c in cols) + "trainable".rjust(12))
    for n in names:
        print(n.ljust(w) + "".join(f"{medians[n].get(c, float('nan')):17.1f}" for c in cols)
              + f"{params[n]['trainable']:12,}")
    for r, v in ratios.items():
        print(r.ljust(w) + "".join(f"{v.get(c, float('nan')):17.2f}" for c in cols))
    if param_check:
        print("trainable at 448: " + ", ".join(f"{n} {c['trainable_at_448']:,}"
                                               f" ({'=' if c['matches_paper_8344634'] else '!='} 8,344,634)"
                                               for n, c in param_check.items()))
    print(f"total wall {total_s:.1f} s")

    result = dict(
        args=vars(a), cases=names, medians=medians, raw_ms=raw, ratios=ratios, params=params,
        param_check_448=param_check, output_shapes=shapes, reference_info=ref_info,
        build_s=build_s, total_wall_s=total_s,
        env=dict(torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
                 torch_threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                 omp_num_threads=os.environ.get("OMP_NUM_THREADS"), cpu_count=os.cpu_count(),
                 loadavg_start=load_start, loadavg_end=load_end, platform=platform.platform()),
        notes=dict(timing="perf_counter around one forward (infer: eval + no_grad) or forward+backward "
                          "(train: loss = sum of out.float().mean(), no optimizer step, grads zeroed "
                          "(set_to_none) before and after, outside the timed region); median of repeats "
                          "after warmup rounds; in each round every case runs once, order rotated.",
                   memory="vmt_adapter.device.step_peak_memory_mb on CPU: profiler memory events replayed "
                          "in time order, max running sum (tensor bytes only), one train step at batch 1."),
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
