"""``edge``: a thin boundary map: BCE with positives weighted 0.95, pooled into the evaluation ``loss``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..tasks import TaskSpec
from .base import Meter, mean, ratio, register_kind, weighted_bce_sum
from .binary import Binary

EDGE_POS_WEIGHT = 0.95  # the public PASCAL edge loss's pos_weight


class EdgeMeter(Meter):
    """Edge ``loss``: the weighted BCE of training (positives 0.95) pooled over valid pixels.

    Only a proxy for model selection. The official PASCAL-Context edge metric (odsF, optimal
    dataset scale F-measure with boundary matching) needs the external SEISM / MATLAB tool on
    saved predictions; this package does not compute it.
    """

    def _zeros(self) -> dict[str, Tensor]:
        return {"sum": torch.zeros((), dtype=torch.float64), "pixels": torch.zeros((), dtype=torch.int64)}

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        total, count = weighted_bce_sum(pred.float(), target, EDGE_POS_WEIGHT)
        self._add(sum=total, pixels=count)

    def compute(self) -> dict[str, float]:
        return {"loss": ratio(self._state["sum"], self._state["pixels"])}


class Edge(Binary):
    """Pictures, prior and resampling as ``binary``; a fixed positive weight instead of the batch-balanced one:
    it is additive over pixels, so the meter can pool it exactly over a whole set."""

    name = "edge"

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return mean(*weighted_bce_sum(pred, target, EDGE_POS_WEIGHT))

    def meter(self, spec: TaskSpec) -> Meter:
        return EdgeMeter()


EDGE = register_kind(Edge())
