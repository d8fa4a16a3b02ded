"""Evaluation over a whole split: meters accumulated per task, summed across processes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import build_dataset
from ..device import autocast
from ..tasks import TaskSpec
from .config import RunConfig
from .distributed import DistInfo
from .loader import eval_loader
from .metrics import build_meters, headline


def move(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, tasks: list[TaskSpec], device: torch.device,
             precision: str = "fp32", progress: bool = True) -> dict[str, dict[str, float]]:
    """All metrics of every task over ``loader`` (all ranks' shards when distributed)."""
    meters = build_meters(tasks)
    was_training = model.training
    model.eval()
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        batch = move(batch, device)
        with autocast(device, precision):
            out = model(batch["image"])
        for spec in tasks:
            meters[spec.name].update(out[spec.name].float(), batch[spec.name])
    model.train(was_training)
    for m in meters.values():
        m.all_reduce()
    return {name: m.compute() for name, m in meters.items()}


def headlines(tasks: list[TaskSpec], details: dict[str, dict[str, float]]) -> dict[str, float]:
    return {spec.name: headline(spec, details[spec.name]) for spec in tasks}


def evaluate_split(model: nn.Module, tasks: list[TaskSpec], cfg: RunConfig, split: str, info: DistInfo,
                   progress: bool = True) -> dict[str, dict[str, float]]:
    """Evaluate on ``split`` of the config's dataset, at ``data.size`` or (``eval.full_res``) the original size."""
    data = build_dataset(cfg.data.name, cfg.data.root, split, cfg.tasks, None if cfg.eval.full_res else cfg.data.size,
                         train=False, seed=cfg.seed, num=cfg.data.num_val or None, cache_dir=cfg.data.cache_dir)
    loader = eval_loader(data, 1 if cfg.eval.full_res else cfg.eval.batch_size, info.rank, info.world_size,
                         cfg.data.workers)
    precision = cfg.train.precision if cfg.eval.precision == "train" else "fp32"
    return evaluate(model, loader, tasks, info.device, precision, progress)
