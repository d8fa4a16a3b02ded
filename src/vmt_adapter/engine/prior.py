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

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from ..data import build_dataset, dataset_channels, dataset_class
from ..kinds import kind_of
from ..tasks import TaskSpec, resolve_tasks
from .config import RunConfig
from .evaluate import headlines
from .loader import eval_loader
from .metrics import build_meters


@torch.no_grad()
def constant_prior(tasks: Sequence[TaskSpec], batches: Iterable[dict[str, Tensor]]) -> dict[str, dict[str, float]]:
    """All metrics of the constant prior of ``batches`` (iterated twice: statistics, then scoring)."""
    stats: dict[str, Tensor] = {}
    for batch in batches:
        for spec in tasks:
            s = kind_of(spec).prior_stats(batch[spec.name], spec)
            stats[spec.name] = stats[spec.name] + s if spec.name in stats else s
    maps = {spec.name: kind_of(spec).prior_map(stats[spec.name]) for spec in tasks}
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
