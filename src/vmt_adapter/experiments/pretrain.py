"""Upstream pretraining of the embedded backbone: dense SynthScenes targets on a reserved range.

Why dense: scene-level labels gave a small Swin almost no signal per image (it stayed at the label
prior, see ``docs/pretrain.md``); a per-pixel target gives thousands of labels per image.
Why these targets: the pretraining task set (depth, edges, ``coarse_shape``) is not the
downstream one (semseg, human_parts, sal, normals), and its taxonomy is coarser and cut along
another line (``data.synth.COARSE_SHAPES``), so adapting the backbone afterwards is a transfer.
Pretraining is an ordinary multi-task run of ``mt-full`` (the whole backbone trains) through the
project's trainer, so it checkpoints and resumes like any run; its backbone is then written as
fp16 safetensors that ``model.pretrained`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.synth import VERSION
from ..engine.config import RunConfig
from ..engine.train import train
from ..errors import ConfigError
from ..models.backbones import family_of, write_weights
from ..models.multitask import MultiTaskModel
from ..reporting.figures import pyplot, save_figure


def export_backbone(model: MultiTaskModel, out: Path, cfg: RunConfig, steps: int) -> None:
    """Write the backbone to ``out`` with the run's identity in the safetensors metadata."""
    meta = {"backbone": model.base.backbone, "size": str(cfg.data.size), "dataset_version": VERSION,
            "objective": "dense: " + ", ".join(cfg.tasks), "split": cfg.data.train_split,
            "num": str(cfg.data.num_train), "steps": str(steps), "seed": str(cfg.seed)}
    write_weights(model.backbone, family_of(model.backbone), out, meta)


def plot_losses(log: Path, out: Path) -> None:
    """Training loss per task (log scale) and the evaluations logged on the way, as a PNG."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train_rows = [r for r in records if "losses" in r]
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for task in train_rows[0]["losses"] if train_rows else []:
        ax.plot([r["step"] for r in train_rows], [r["losses"][task] for r in train_rows], label=task, lw=1)
    ax.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], label="weighted total", color="k", lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (batch, unweighted per task)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)


def pretrain(cfg: RunConfig, run_dir: str | Path, out: str | Path, resume: bool = False,
             progress: bool = True) -> dict | None:
    """Train ``cfg`` (an ``mt-full`` run), then write its backbone to ``out``; None if interrupted."""
    if cfg.model.method != "mt-full":
        raise ConfigError(f"model.method: pretraining trains the whole backbone ('mt-full'), got {cfg.model.method!r}")
    if cfg.data.train_split in ("train", "val"):
        raise ConfigError(f"data.train_split {cfg.data.train_split!r}: pretraining must not read the downstream "
                          "train or val scenes; use 'pretrain'")
    run_dir, out = Path(run_dir), Path(out)
    trainer = train(cfg, run_dir, resume=resume, progress=progress)
    if trainer.interrupted:
        return None
    export_backbone(trainer.model, out, cfg, trainer.step)
    plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
    return {"out": str(out), "result": trainer.result, "loss_png": str(run_dir / "loss.png")}
