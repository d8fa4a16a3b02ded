"""Efficiency benchmark: time and memory of each method's backbone pass as the task count T grows.

The claim under test is VMT-Adapter's O(1) cost in T: one backbone pass, task streams only at the
taps. One row per (method, T), each a median over ``repeats`` runs after ``warmup`` runs:

- ``fwd_ms``: ``method.taps(backbone, x)`` under ``no_grad`` in eval mode, i.e. the backbone with
  its adapters producing all T task streams; decoders excluded.
- ``fwd_bwd_ms``: the same pass with autograd, then backward of a scalar (the sum of the taps'
  means) into the backbone's trainable parameters (adapters; every weight for full fine-tuning).
  ``None`` when the backbone trains nothing (``frozen``): decoder-only training never backpropagates
  into the backbone, and a backward into nothing is not a cost anyone pays.
- ``peak_mem_mb``: peak tensor memory of that training pass above what was allocated before it
  (activations, gradients, temporaries; weights are in ``weights_mb``), by
  ``device.step_peak_memory_mb``. For ``frozen`` it is the ``no_grad`` forward, which is what
  decoder-only training runs on the backbone.
- ``decoders_fwd_ms``: the T decoders on precomputed taps, ``no_grad``, reported apart.
- ``train_step_ms``: the whole model (decoders included) forward and backward, no optimiser step;
  ``img_per_s_train`` derives from it and ``img_per_s_infer`` from ``fwd_ms + decoders_fwd_ms``.

Task sets are the first T of ``TASK_ORDER``; beyond six, specs repeat with unique names.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..device import autocast, pick_device, step_peak_memory_mb, timer
from ..errors import ConfigError
from ..models.adapters import METHODS, Method
from ..models.backbones import default_size
from ..models.multitask import MultiTaskModel
from ..tasks import TASKS, TaskSpec

FROZEN = "frozen"  # the bare frozen backbone: the registry's base method, under its benchmark name
TASK_ORDER = ("semseg", "human_parts", "sal", "normals", "depth", "edge")


@dataclass
class BenchConfig:
    """What ``vmt bench`` measures; ``methods`` empty means every registered method."""

    backbone: str = "swin_nano"
    size: int | None = None  # input side; None is the backbone's default
    batch: int = 2
    task_counts: tuple[int, ...] = (1, 2, 4, 8)
    methods: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "fp32"
    repeats: int = 5
    warmup: int = 2
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.batch < 1 or self.repeats < 1 or self.warmup < 0:
            raise ConfigError("bench: batch and repeats must be >= 1 and warmup >= 0")
        if not self.task_counts or min(self.task_counts) < 1:
            raise ConfigError(f"bench: task counts must be positive integers, got {self.task_counts}")
        known = benchmark_names()
        for m in self.methods:
            if m not in known:
                raise ConfigError(f"bench: unknown method {m!r}; choose from {', '.join(known)}")


def benchmark_names() -> list[str]:
    """Every registered method, the base one (no adapter) listed as ``frozen``."""
    return [FROZEN if name == Method.name else name for name in METHODS]


def registry_name(name: str) -> str:
    return Method.name if name == FROZEN else name


def bench_tasks(count: int) -> list[TaskSpec]:
    """The first ``count`` tasks of ``TASK_ORDER``; past six, the specs cycle with names ``<task>_<i>``."""
    if count <= len(TASK_ORDER):
        return [TASKS[n] for n in TASK_ORDER[:count]]
    return [replace(TASKS[TASK_ORDER[i % len(TASK_ORDER)]], name=f"{TASK_ORDER[i % len(TASK_ORDER)]}_{i}")
            for i in range(count)]


def median_ms(device: torch.device, fn: Callable[[], None], repeats: int, warmup: int,
              before: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup``; ``before`` runs untimed each time."""
    for _ in range(warmup):
        before()
        fn()
    times = []
    for _ in range(repeats):
        before()
        with timer(device) as out:
            fn()
        times.append(out[0])
    return statistics.median(times)


def load_1min() -> float | None:
    """The 1-minute load average, recorded with each row because other processes skew CPU timings."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure(cfg: BenchConfig, method: str, count: int) -> dict:
    """One row: build the model for ``count`` tasks, then time and measure it (see the module doc)."""
    device = pick_device(cfg.device)
    size = cfg.size or default_size(cfg.backbone)
    load = load_1min()
    torch.manual_seed(0)
    model = MultiTaskModel(cfg.backbone, registry_name(method), bench_tasks(count), img_size=size).to(device)
    x = torch.randn(cfg.batch, 3, size, size, device=device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if cfg.compile:
        for module in (model.backbone.patch_embed, *model.backbone.layers, *model.decoders.values()):
            module.compile()
    trains_backbone = any(p.requires_grad for p in model.backbone.parameters())

    def taps() -> list[torch.Tensor]:
        return model.method.taps(model.backbone, x)

    def forward() -> None:
        with torch.no_grad(), autocast(device, cfg.precision):
            taps()

    def forward_backward() -> None:
        with autocast(device, cfg.precision):
            loss = sum(t.float().mean() for t in taps())
        loss.backward()

    def train_step() -> None:
        with autocast(device, cfg.precision):
            loss = sum(o.float().mean() for o in model(x).values())
        loss.backward()

    def clear_grads() -> None:
        model.zero_grad(set_to_none=True)

    with torch.no_grad(), autocast(device, cfg.precision):
        model.eval()
        maps = taps()

    def decoders() -> None:  # as MultiTaskModel.forward routes taps, decoders only
        with torch.no_grad(), autocast(device, cfg.precision):
            for i, name in enumerate(model.task_names):
                model.decoders[name]([m[i if m.shape[0] > 1 else 0] for m in maps], (size, size))

    fwd = median_ms(device, forward, cfg.repeats, cfg.warmup)
    dec = median_ms(device, decoders, cfg.repeats, cfg.warmup)
    del maps
    model.train()
    fwd_bwd = median_ms(device, forward_backward, cfg.repeats, cfg.warmup, clear_grads) if trains_backbone else None
    clear_grads()
    if trains_backbone:
        peak = step_peak_memory_mb(device, forward_backward)
    else:
        model.eval()
        peak = step_peak_memory_mb(device, forward)
        model.train()
    step = median_ms(device, train_step, cfg.repeats, cfg.warmup, clear_grads)
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return {
        "method": method, "tasks": count, "fwd_ms": fwd, "fwd_bwd_ms": fwd_bwd, "peak_mem_mb": peak,
        "device": str(device), "decoders_fwd_ms": dec, "train_step_ms": step,
        "img_per_s_train": cfg.batch * 1000.0 / step, "img_per_s_infer": cfg.batch * 1000.0 / (fwd + dec),
        "trainable_backbone_params": sum(p.numel() for p in model.backbone.parameters() if p.requires_grad),
        "weights_mb": weights / 2**20, "backbone": cfg.backbone, "size": size, "batch": cfg.batch,
        "precision": cfg.precision, "compile": cfg.compile, "channels_last": cfg.channels_last,
        "threads": torch.get_num_threads(), "repeats": cfg.repeats, "warmup": cfg.warmup, "load_1min": load,
    }


def run_bench(cfg: BenchConfig) -> Iterator[dict]:
    """Rows in (method, T) order, yielded as they are measured so a long run shows progress."""
    for method in cfg.methods or benchmark_names():
        for count in cfg.task_counts:
            yield measure(cfg, method, count)


def add_ratios(rows: list[dict]) -> list[dict]:
    """The targets' ratios: ``fwd_bwd_vs_min_t`` (same method, its smallest T) and ``fwd_vs_frozen`` (same T)."""
    first: dict[str, dict] = {}
    for r in rows:
        if r["method"] not in first or r["tasks"] < first[r["method"]]["tasks"]:
            first[r["method"]] = r
    frozen = {r["tasks"]: r["fwd_ms"] for r in rows if r["method"] == FROZEN}
    for r in rows:
        base = first[r["method"]]["fwd_bwd_ms"]
        r["fwd_bwd_vs_min_t"] = r["fwd_bwd_ms"] / base if r["fwd_bwd_ms"] is not None and base else None
        r["fwd_vs_frozen"] = r["fwd_ms"] / frozen[r["tasks"]] if r["tasks"] in frozen else None
    return rows


COLUMNS = (  # field, header, width, number format
    ("method", "method", 12, ""), ("tasks", "T", 3, "d"), ("fwd_ms", "fwd ms", 9, ".1f"),
    ("fwd_bwd_ms", "fwd+bwd ms", 11, ".1f"), ("peak_mem_mb", "peak MB", 8, ".1f"),
    ("decoders_fwd_ms", "dec fwd ms", 11, ".1f"), ("train_step_ms", "step ms", 9, ".1f"),
    ("img_per_s_train", "img/s train", 12, ".1f"), ("img_per_s_infer", "img/s infer", 12, ".1f"),
    ("fwd_bwd_vs_min_t", "fb/T_min", 9, ".2f"), ("fwd_vs_frozen", "fwd/frozen", 11, ".2f"),
    ("load_1min", "load", 5, ".1f"),
)


def format_table(rows: list[dict]) -> str:
    """A fixed-width table of the main fields; ``-`` where a value does not apply."""
    def cell(text: str, width: int, first: bool) -> str:
        return text.ljust(width) if first else text.rjust(width)

    lines = [" ".join(cell(h, w, i == 0) for i, (_, h, w, _) in enumerate(COLUMNS))]
    for r in rows:
        lines.append(" ".join(cell("-" if r.get(f) is None else format(r[f], spec), w, i == 0)
                              for i, (f, _, w, spec) in enumerate(COLUMNS)))
    return "\n".join(lines)


def plot(rows: list[dict], path: str | Path) -> None:
    """Time against T per method, forward and forward+backward side by side (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    counts = sorted({r["tasks"] for r in rows})
    for ax, field, title in zip(axes, ("fwd_ms", "fwd_bwd_ms"), ("forward (no_grad)", "forward + backward")):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [(r["tasks"], r[field]) for r in rows if r["method"] == method and r[field] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("tasks T")
        ax.set_ylabel("ms per batch (backbone + adapters)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    r0 = rows[0]
    fig.suptitle(f"{r0['backbone']} {r0['size']} px, batch {r0['batch']}, {r0['device']}, {r0['precision']}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
