"""The weighted sum of the task losses; each task's loss is its kind's (``vmt_adapter.kinds``).

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

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..kinds import kind_of
from ..tasks import TaskSpec


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
        self.kinds = {t.name: kind_of(t) for t in tasks}
        self.tasks = list(tasks)
        self.weights = {t.name: float(weights.get(t.name, t.loss_weight)) for t in tasks}
        for name, w in self.weights.items():
            if not w >= 0:
                raise ConfigError(f"loss weight for {name} must be a non-negative number, got {w}")

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        losses = {t.name: self.kinds[t.name].loss(outputs[t.name], batch[t.name]) for t in self.tasks}
        total = torch.stack([self.weights[name] * loss.float() for name, loss in losses.items()]).sum()
        return total, losses
