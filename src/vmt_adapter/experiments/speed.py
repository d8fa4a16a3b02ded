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
- With ``tap_norm`` off, VMT's taps stay factored and its up-projection folds into the decoders'
  first conv (``models/taps``, ``fold_taps`` in a row): ``fwd_ms`` and ``fwd_bwd_ms`` then stop
  at the shared map and code, and the T small per-task products move into ``decoders_fwd_ms`` and
  ``train_step_ms``, which are the figures to compare with the dense form (``unfolded`` rows).
- ``train_step_ms``: the whole model (decoders included) forward and backward, no optimiser step;
  ``img_per_s_train`` derives from it and ``img_per_s_infer`` from ``fwd_ms + decoders_fwd_ms``.
- ``train_peak_mem_mb``: peak memory of that whole-model step above what was allocated before it
  (gradient buffers included); with ``weights_mb`` and ``adamw_state_mb`` (AdamW's two moment
  buffers per trainable parameter, computed, not allocated) it gives a training footprint.

Task sets are the first T of ``TASK_ORDER``; beyond six, specs repeat with unique names. All
cases are built first and every kind of pass is timed round-robin over them, so that load from
other processes during a run (a shared CPU) hits every case alike and the ratios stay fair.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..device import autocast, load_average, pick_device, step_peak_memory_mb, timer
from ..errors import ConfigError
from ..models.adapters import METHODS, Method
from ..models.backbones import default_size, family_of
from ..models.factory import ModelConfig, build_model
from ..models.taps import FactoredTap, task_input
from ..reporting.figures import method_colour, pyplot, save_figure
from ..reporting.report import render_table
from ..tasks import TASKS, TaskSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    grad_checkpointing: bool = False  # also measure every one-pass case with gradient checkpointing
    taps: str = "stage"  # model.taps: "merged" passes the task streams through the next patch merging
    tap_norm: bool = True  # the decoders' per-tap channel norm; without it VMT's up-projection folds (models/taps)
    unfolded: bool = False  # also measure every case that folds with the fold switched off
    per_level: bool = False  # also measure every case with the decoders' per-level fusion (model.decoder_fusion)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.repeats < 1 or self.warmup < 0:
            raise ConfigError(f"bench: batch ({self.batch}) and repeats ({self.repeats}) must be >= 1, "
                              f"warmup ({self.warmup}) >= 0")
        if self.size is not None and not (32 <= self.size <= 4096 and self.size % 32 == 0):
            # as data.size: Swin halves the map three times after its patch-4 embedding
            raise ConfigError(f"bench: --size must be a multiple of 32 between 32 and 4096, got {self.size}")
        self.methods = tuple(FROZEN if m == Method.name else m for m in self.methods)
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
    cycled = [TASKS[TASK_ORDER[i % len(TASK_ORDER)]] for i in range(count)]
    return [replace(spec, name=f"{spec.name}_{i}") for i, spec in enumerate(cycled)]


class Case:
    """One (method, T) model and input, with the passes that are timed (see the module doc)."""

    def __init__(self, cfg: BenchConfig, method: str, count: int, device: torch.device,
                 grad_checkpointing: bool = False, fold: bool = True, fusion: str = "concat") -> None:
        self.method, self.count, self.device, self.precision = method, count, device, cfg.precision
        self.grad_checkpointing = grad_checkpointing
        self.size = cfg.size or default_size(cfg.backbone)
        torch.manual_seed(0)
        self.fusion = fusion
        self.model = build_model(ModelConfig(backbone=cfg.backbone, method=registry_name(method), taps=cfg.taps,
                                             tap_norm=cfg.tap_norm, decoder_fusion=fusion),
                                 bench_tasks(count), img_size=self.size)
        self.unfolded = not fold and self.model.method.fold_taps  # a folding case, measured with the fold off
        self.model.method.fold_taps &= fold
        self.model.set_grad_checkpointing(grad_checkpointing)
        self.model.to(device)
        self.x = torch.randn(cfg.batch, 3, self.size, self.size, device=device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        if cfg.compile:
            backbone = self.model.backbone
            blocks = [b for stage in family_of(backbone).stages(backbone) for b in stage]
            for module in (backbone.patch_embed, *blocks, *self.model.decoders.values()):
                module.compile()
        self.has_backbone_grads = any(p.requires_grad for p in self.model.backbone.parameters())
        self.maps: list[torch.Tensor] = []

    def taps(self) -> list[torch.Tensor]:
        return self.model.method.taps(self.model.backbone, self.x)

    def forward(self) -> None:
        with torch.no_grad(), autocast(self.device, self.precision):
            self.taps()

    def forward_backward(self) -> None:
        with autocast(self.device, self.precision):
            loss = sum(p.float().mean() for t in self.taps()
                       for p in (t.parts() if isinstance(t, FactoredTap) else [t]))
        loss.backward()

    def keep_taps(self) -> None:
        with torch.no_grad(), autocast(self.device, self.precision):
            self.maps = self.taps()

    def decoders(self) -> None:
        """The T decoders on the kept taps, routed as ``MultiTaskModel.forward`` routes them."""
        with torch.no_grad(), autocast(self.device, self.precision):
            for i, name in enumerate(self.model.task_names):
                self.model.decoders[name]([task_input(m, i) for m in self.maps], (self.size, self.size))

    def train_step(self) -> None:
        with autocast(self.device, self.precision):
            loss = sum(o.float().mean() for o in self.model(self.x).values())
        loss.backward()

    def clear_grads(self) -> None:
        self.model.zero_grad(set_to_none=True)

    def peak_memory(self) -> float:
        """Peak of the backbone's part of a training step: fwd+bwd, or the no_grad forward if frozen."""
        self.clear_grads()
        return step_peak_memory_mb(self.device, self.forward_backward if self.has_backbone_grads else self.forward)

    def train_peak_memory(self) -> float:
        self.clear_grads()
        return step_peak_memory_mb(self.device, self.train_step)


def interleaved_medians(device: torch.device, fns: list[Callable[[], None]], repeats: int, warmup: int,
                        before: list[Callable[[], None]]) -> list[float]:
    """Median ms of each ``fn``; the timed runs go round-robin over all of them so that a change in
    machine load during the run hits every case alike. ``before`` runs untimed ahead of each call."""
    for fn, prep in zip(fns, before):
        for _ in range(warmup):
            prep()
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, prep, out in zip(fns, before, times):
            prep()
            with timer(device) as t:
                fn()
            out.append(t[0])
    return [statistics.median(t) for t in times]


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda msg: None) -> list[dict]:
    """One row per (method, T), in that order. Every case is built first, then each kind of pass is
    timed over all cases together (``interleaved_medians``), so ratios between cases are fair."""
    device = pick_device(cfg.device)
    load_start = load_average()
    names = cfg.methods or benchmark_names()
    cases = [Case(cfg, m, t, device) for m in names for t in cfg.task_counts]
    if cfg.grad_checkpointing:  # the same cases again, recomputing in backward (one-pass methods only)
        cases += [Case(cfg, m, t, device, grad_checkpointing=True) for m in names for t in cfg.task_counts
                  if METHODS[registry_name(m)].one_pass]
    if cfg.unfolded:  # the folding cases again, with the dense task streams (the equality test's other side)
        cases += [Case(cfg, c.method, c.count, device, c.grad_checkpointing, fold=False) for c in list(cases)
                  if c.model.method.fold_taps]
    if cfg.per_level:  # every case again, the decoders' first conv at each level's resolution
        cases += [Case(cfg, c.method, c.count, device, c.grad_checkpointing, not c.unfolded, "per_level")
                  for c in list(cases)]
    nothing = [lambda: None] * len(cases)
    clear = [c.clear_grads for c in cases]
    trained = [c for c in cases if c.has_backbone_grads]

    def set_mode(train: bool) -> None:
        for c in cases:
            c.model.train(train)

    log(f"{len(cases)} cases built; timing forward")
    set_mode(False)
    fwd = interleaved_medians(device, [c.forward for c in cases], cfg.repeats, cfg.warmup, nothing)
    log("timing decoders")
    for c in cases:
        c.keep_taps()
    dec = interleaved_medians(device, [c.decoders for c in cases], cfg.repeats, cfg.warmup, nothing)
    for c in cases:
        c.maps = []
    log("measuring peak memory")
    for c in cases:
        c.model.train(c.has_backbone_grads)  # frozen: the no_grad forward in eval mode
    peak = [c.peak_memory() for c in cases]
    set_mode(True)
    train_peak = [c.train_peak_memory() for c in cases]
    log("timing forward+backward")
    fb = dict(zip(trained, interleaved_medians(device, [c.forward_backward for c in trained], cfg.repeats,
                                               cfg.warmup, [c.clear_grads for c in trained])))
    log("timing whole-model training steps")
    step = interleaved_medians(device, [c.train_step for c in cases], cfg.repeats, cfg.warmup, clear)
    load_end = load_average()
    rows = []
    for c, f, d, p, s, tp in zip(cases, fwd, dec, peak, step, train_peak):
        model = c.model
        weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        trainable = sum(q.numel() * q.element_size() for q in model.parameters() if q.requires_grad)
        rows.append({
            "method": c.method, "tasks": c.count, "grad_checkpointing": c.grad_checkpointing,
            "fold_taps": model.method.fold_taps, "unfolded": c.unfolded,
            "decoder_fusion": c.fusion, "taps": cfg.taps, "tap_norm": cfg.tap_norm,
            "fwd_ms": f, "fwd_bwd_ms": fb.get(c), "peak_mem_mb": p,
            "device": str(device), "decoders_fwd_ms": d, "train_step_ms": s,
            "img_per_s_train": cfg.batch * 1000.0 / s, "img_per_s_infer": cfg.batch * 1000.0 / (f + d),
            "trainable_backbone_params": sum(q.numel() for q in model.backbone.parameters() if q.requires_grad),
            "train_peak_mem_mb": tp, "weights_mb": weights / 2**20, "adamw_state_mb": 2 * trainable / 2**20,
            "backbone": cfg.backbone, "size": c.size, "batch": cfg.batch,
            "precision": cfg.precision, "compile": cfg.compile, "channels_last": cfg.channels_last,
            "threads": torch.get_num_threads(), "repeats": cfg.repeats, "warmup": cfg.warmup,
            "load_1min_start": load_start, "load_1min_end": load_end,
        })
    return rows


def add_ratios(rows: list[dict]) -> list[dict]:
    """The ratios: ``fwd_bwd_vs_min_t`` (same series, its smallest T) and ``fwd_vs_frozen`` (the frozen row of the
    same T and decoder fusion, without checkpointing: the run's own measurement of the same pass)."""
    first: dict[str, dict] = {}
    for r in rows:
        key = label(r)
        if key not in first or r["tasks"] < first[key]["tasks"]:
            first[key] = r
    frozen = {(r["tasks"], r.get("decoder_fusion")): r["fwd_ms"] for r in rows
              if r["method"] == FROZEN and not r.get("grad_checkpointing")}
    for r in rows:
        base = first[label(r)]["fwd_bwd_ms"]
        r["fwd_bwd_vs_min_t"] = r["fwd_bwd_ms"] / base if r["fwd_bwd_ms"] is not None and base else None
        same = frozen.get((r["tasks"], r.get("decoder_fusion")))
        r["fwd_vs_frozen"] = r["fwd_ms"] / same if same else None
    return rows


COLUMNS = (  # field, header, number format
    ("method", "method", ""), ("tasks", "T", "d"), ("grad_checkpointing", "ckpt", ""),
    ("decoder_fusion", "fusion", ""), ("fwd_ms", "fwd ms", ".1f"),
    ("fwd_bwd_ms", "fwd+bwd ms", ".1f"), ("peak_mem_mb", "peak MB", ".1f"),
    ("decoders_fwd_ms", "dec fwd ms", ".1f"), ("train_step_ms", "step ms", ".1f"),
    ("train_peak_mem_mb", "step MB", ".1f"),
    ("img_per_s_train", "img/s train", ".1f"), ("img_per_s_infer", "img/s infer", ".1f"),
    ("fwd_bwd_vs_min_t", "fb/T_min", ".2f"), ("fwd_vs_frozen", "fwd/frozen", ".2f"),
)


def bench_table(rows: list[dict]) -> str:
    """An aligned table of the main fields; ``-`` where a value does not apply."""
    cells = [[label(r) if f == "method" else "-" if r.get(f) is None else format(r[f], spec) for f, _, spec in COLUMNS]
             for r in rows]
    return render_table([h for _, h, _ in COLUMNS], cells)


def label(row: dict) -> str:
    """A row's series: the method, marked when it ran with gradient checkpointing, with VMT's taps unfolded
    where its layout lets them fold (``--unfolded``) or with the decoders' per-level fusion (``--per-level``)."""
    return (row["method"] + (" (ckpt)" if row.get("grad_checkpointing") else "")
            + (" (unfolded)" if row.get("unfolded") else "")
            + (" (per level)" if row.get("decoder_fusion") == "per_level" else ""))


# A method's variants keep its colour and differ by the line: (gradient checkpointing, unfolded) -> style.
LINESTYLES = {(False, False): "-", (True, False): "--", (False, True): ":", (True, True): "-."}


def figure(rows: list[dict]) -> Figure:
    """Time against T per series, forward and forward+backward side by side; a method has one colour in both."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    counts = sorted({r["tasks"] for r in rows})
    for ax, field, title in zip(axes, ("fwd_ms", "fwd_bwd_ms"), ("forward (no_grad)", "forward + backward")):
        for name in dict.fromkeys(map(label, rows)):
            series = [r for r in rows if label(r) == name and r[field] is not None]
            if series:
                first = series[0]
                ax.plot([r["tasks"] for r in series], [r[field] for r in series], marker="o", label=name,
                        color=method_colour(registry_name(first["method"])),
                        ls=LINESTYLES[bool(first.get("grad_checkpointing")), bool(first.get("unfolded"))])
        ax.set_xticks(counts, [str(c) for c in counts])  # linear T axis: O(T) cost shows as a straight line
        ax.set_xlabel("tasks T")
        ax.set_ylabel("ms per batch (backbone + adapters)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    r0 = rows[0]
    fig.suptitle(f"{r0['backbone']} {r0['size']} px, batch {r0['batch']}, {r0['device']} ({r0['threads']} threads), "
                 f"{r0['precision']}, median of {r0['repeats']}")
    return fig


def plot(rows: list[dict], path: str | Path) -> None:
    """``figure(rows)`` as a PNG."""
    save_figure(figure(rows), path, dpi=120)
