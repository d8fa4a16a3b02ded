"""The ``prior`` row: the best constant prediction per task on an evaluation split.

Why: a table of dense-prediction metrics means little without its floor. On a dataset where
background fills most pixels a model that predicts background everywhere already scores a
sizeable mIoU, and readers must see that number beside the methods'.

The prior is one fixed output map per task, the same for every image, taken from the split's
own ground truth at the evaluation resolution, pixel position by pixel position:

- ``classes``: the majority label at each position;
- ``binary`` and ``edge``: the positive frequency at each position, as a probability (the
  saliency meter's threshold sweep then picks the best constant threshold);
- ``normals``: the mean normal at each position (the meter normalises it);
- ``depth``: the mean valid depth at each position.

It is scored by the same meters as a model, so its numbers are comparable column by column.
Positions with no valid label anywhere fall back to the split-wide statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import build_dataset, dataset_channels, dataset_class
from ..tasks import IGNORE_INDEX, TaskSpec, resolve_tasks
from .config import RunConfig
from .evaluate import headlines
from .loader import eval_loader
from .metrics import build_meters


def _class_stats(target: Tensor, spec: TaskSpec) -> Tensor:
    """(C, H, W) label counts per position over the batch."""
    valid = target != IGNORE_INDEX
    hot = F.one_hot(torch.where(valid, target, 0), spec.channels).permute(0, 3, 1, 2).double()
    return (hot * valid.unsqueeze(1)).sum(0)


def _binary_stats(target: Tensor, spec: TaskSpec) -> Tensor:
    """(2, H, W): positives and valid pixels per position."""
    valid = target != IGNORE_INDEX
    return torch.stack([((target == 1) & valid).sum(0), valid.sum(0)]).double()


def _mean_stats(target: Tensor, spec: TaskSpec) -> Tensor:
    """(C + 1, H, W): sum of valid values and valid count per position (normals: non-zero; depth: > 0)."""
    valid = target.abs().sum(1, keepdim=True) > 0 if target.shape[1] == 3 else target > 0
    return torch.cat([(target * valid).sum(0), valid.sum(0)]).double()


def _fill(per_pos: Tensor, count: Tensor, whole: Tensor) -> Tensor:
    """Per-position statistic where a position saw a valid pixel, else the split-wide one."""
    return torch.where(count > 0, per_pos, whole.view(-1, 1, 1).expand_as(per_pos))


def _class_map(stats: Tensor) -> Tensor:
    counts = _fill(stats, stats.sum(0, keepdim=True), stats.sum((1, 2)))
    return F.one_hot(counts.argmax(0), stats.shape[0]).permute(2, 0, 1).float() * 20.0  # confident logits


def _binary_map(stats: Tensor) -> Tensor:
    freq = stats[0:1] / stats[1:2].clamp(min=1)
    freq = _fill(freq, stats[1:2], stats[0].sum().view(1) / stats[1].sum().clamp(min=1))
    return torch.logit(freq.clamp(1e-6, 1 - 1e-6)).float()


def _mean_map(stats: Tensor) -> Tensor:
    sums, count = stats[:-1], stats[-1:]
    mean = sums / count.clamp(min=1)
    return _fill(mean, count, sums.sum((1, 2)) / count.sum().clamp(min=1)).float()


# kind -> (statistics of a batch of targets, constant output map from the summed statistics)
PRIORS: dict[str, tuple[Callable[[Tensor, TaskSpec], Tensor], Callable[[Tensor], Tensor]]] = {
    "classes": (_class_stats, _class_map),
    "binary": (_binary_stats, _binary_map),
    "edge": (_binary_stats, _binary_map),
    "normals": (_mean_stats, _mean_map),
    "depth": (_mean_stats, _mean_map),
}


@torch.no_grad()
def constant_prior(tasks: Sequence[TaskSpec], batches: Iterable[dict[str, Tensor]]) -> dict[str, dict[str, float]]:
    """All metrics of the constant prior of ``batches`` (iterated twice: statistics, then scoring)."""
    stats: dict[str, Tensor] = {}
    for batch in batches:
        for spec in tasks:
            s = PRIORS[spec.kind][0](batch[spec.name], spec)
            stats[spec.name] = stats[spec.name] + s if spec.name in stats else s
    maps = {spec.name: PRIORS[spec.kind][1](stats[spec.name]) for spec in tasks}
    meters = build_meters(tasks)
    for batch in batches:
        for spec in tasks:
            n = batch[spec.name].shape[0]
            meters[spec.name].update(maps[spec.name].expand(n, *maps[spec.name].shape), batch[spec.name])
    return {name: m.compute() for name, m in meters.items()}


def prior_details(cfg: RunConfig, split: str | None = None) -> dict[str, dict[str, float]]:
    """``constant_prior`` of ``split`` (default ``eval.split``) of the config's dataset at ``data.size``."""
    tasks = resolve_tasks(cfg.tasks, dataset_channels(cfg.data.name))
    data = build_dataset(cfg.data.name, cfg.data.root, split or cfg.eval.split, cfg.tasks, cfg.data.size,
                         train=False, seed=cfg.seed, num=cfg.data.num_val or None, cache_dir=cfg.data.cache_dir)
    return constant_prior(tasks, eval_loader(data, cfg.eval.batch_size, 0, 1, cfg.data.workers))


def prior_result(cfg: RunConfig, split: str | None = None) -> dict:
    """The prior as a results row (the ``eval.json`` keys a table reads)."""
    tasks = resolve_tasks(cfg.tasks, dataset_channels(cfg.data.name))
    details = prior_details(cfg, split)
    return {
        "name": "prior",
        "method": "prior",
        "dataset": cfg.data.name,
        "dataset_version": dataset_class(cfg.data.name).VERSION,
        "split": split or cfg.eval.split,
        "metrics": headlines(tasks, details),
        "details": details,
        "params": {"adapter": 0, "trainable": 0},
        "eval_resolution": f"{cfg.data.size}x{cfg.data.size}",
    }
