"""Training losses, one per task ``kind`` (see ``vmt_adapter.tasks``), and their weighted sum.

Every loss is a mean over the *valid* pixels of the batch (ignore 255, zero-norm normals,
depth 0). A batch with no valid pixel for a task gives exactly 0, still attached to the graph,
so a rare all-ignore batch (e.g. human parts on images without a person) never yields NaN.

Choices against the public MTL code (Vandenhende et al., MTLoRA), docs/design.md, section 5.3:

- ``binary`` (saliency): balanced BCE as ``BalancedCrossEntropyLoss``: with ``w`` the fraction
  of negative valid pixels in the batch, positives are weighted ``w`` and negatives ``1 - w``.
  The reference divides by all pixels; we divide by valid pixels (identical without ignore).
- ``edge``: the same BCE with a fixed positive weight of 0.95, as the public PASCAL edge loss
  (``pos_weight=0.95``), rather than the batch-balanced one: it is additive over pixels, so
  the evaluation meter can pool it exactly over a whole set.
- ``normals``: L1 between the L2-normalised prediction and the target, averaged over the
  components of valid pixels (3 per pixel), as the reference ``NormalsLoss(normalize=True)``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..tasks import IGNORE_INDEX, TaskSpec

EDGE_POS_WEIGHT = 0.95


def _masked_sum(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of ``values`` where ``valid`` (broadcast), and how many elements that was.

    ``torch.where`` rather than a product, so a non-finite value on an ignored pixel cannot leak in.
    """
    valid = valid.expand_as(values)
    return torch.where(valid, values, torch.zeros_like(values)).sum(), valid.sum()


_GLOBAL_COUNTS = threading.local()


@contextlib.contextmanager
def global_counts() -> Iterator[None]:
    """Inside this block, under torch.distributed, every mean divides by the valid-pixel count of the
    *global* batch and is scaled by the world size, so DDP's gradient average equals one process's
    gradient on the whole batch, even when processes hold different numbers of valid pixels.
    Only for the training step: every rank must evaluate the same losses in the same order."""
    _GLOBAL_COUNTS.on = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        _GLOBAL_COUNTS.on = False


def _global(count: Tensor) -> Tensor:
    """``count`` summed over processes inside ``global_counts``; unchanged otherwise."""
    if not getattr(_GLOBAL_COUNTS, "on", False):
        return count
    count = count.detach().clone().double()
    dist.all_reduce(count)
    return count


def _fraction(part: Tensor, whole: Tensor) -> Tensor:
    """``part / whole`` over the global batch (0 when ``whole`` is 0)."""
    return _global(part) / _global(whole).clamp(min=1)


def _mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count``, exactly 0 (with a gradient path) when ``count`` is 0."""
    scale = dist.get_world_size() if getattr(_GLOBAL_COUNTS, "on", False) else 1
    return total * scale / _global(count).clamp(min=1).to(total.dtype)


def weighted_bce_sum(logits: Tensor, target: Tensor, pos_weight: float | None = None) -> tuple[Tensor, Tensor]:
    """Weighted BCE summed over valid pixels, and the valid pixel count.

    ``logits`` is (B, 1, H, W), ``target`` int64 (B, H, W) in {0, 1, 255}. Positives weigh
    ``pos_weight`` and negatives ``1 - pos_weight``; ``None`` balances them on this batch
    (``pos_weight`` = fraction of negative valid pixels). Shared with the edge meter.
    """
    valid = target != IGNORE_INDEX
    positive = valid & (target > 0)
    weight: float | Tensor = (pos_weight if pos_weight is not None
                              else _fraction((valid & ~positive).sum(), valid.sum()).to(logits.dtype))
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], positive.to(logits.dtype), reduction="none")
    per_pixel = per_pixel * torch.where(positive, weight, 1 - weight)
    return _masked_sum(per_pixel, valid)


def cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over pixels whose label is not 255."""
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    return _mean(*_masked_sum(per_pixel, target != IGNORE_INDEX))


def balanced_bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Batch-balanced BCE (saliency)."""
    return _mean(*weighted_bce_sum(logits, target))


def edge_bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """BCE with positives weighted ``EDGE_POS_WEIGHT`` (edges are rare)."""
    return _mean(*weighted_bce_sum(logits, target, EDGE_POS_WEIGHT))


def normals_l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between the L2-normalised prediction and the target normal, where the target is non-zero."""
    valid = target.ne(0).any(dim=1, keepdim=True)
    return _mean(*_masked_sum((F.normalize(pred, dim=1) - target).abs(), valid))


def depth_l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 depth error where the target depth is positive."""
    return _mean(*_masked_sum((pred - target).abs(), target > 0))


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "classes": cross_entropy_loss,
    "binary": balanced_bce_loss,
    "normals": normals_l1_loss,
    "depth": depth_l1_loss,
    "edge": edge_bce_loss,
}


class MultiTaskLoss(nn.Module):
    """``sum_t w_t * L_t`` over the task specs, with weights from the task table unless overridden.

    ``forward(outputs, batch)`` takes the model's output dict and a batch dict holding each
    task's target under its name; it returns the weighted total and the *unweighted* per-task
    losses (still attached to the graph; detach them before logging).
    """

    def __init__(self, tasks: Sequence[TaskSpec], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        weights = dict(weights or {})
        names = [t.name for t in tasks]
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"loss weight given for task(s) not trained: {', '.join(unknown)}; "
                              f"tasks are {', '.join(names)}")
        for t in tasks:
            if t.kind not in LOSSES:
                raise ConfigError(f"task {t.name}: no loss for kind {t.kind!r}; known kinds: {', '.join(LOSSES)}")
        self.tasks = list(tasks)
        self.weights = {t.name: float(weights.get(t.name, t.loss_weight)) for t in tasks}
        for name, w in self.weights.items():
            if not w >= 0:
                raise ConfigError(f"loss weight for {name} must be a non-negative number, got {w}")

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        losses = {t.name: LOSSES[t.kind](outputs[t.name], batch[t.name]) for t in self.tasks}
        total = torch.stack([self.weights[name] * loss.float() for name, loss in losses.items()]).sum()
        return total, losses
