"""``binary``: a foreground / background map (saliency): batch-balanced BCE, mIoU and maxF over thresholds."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..tasks import IGNORE_INDEX, TaskSpec
from .base import IGNORE_COLOUR, LabelMapKind, Meter, fill, grey, mean, register_kind, weighted_bce_sum

# float32 like the probabilities they are compared with, rounded from the float64 grid (as the reference).
SALIENCY_THRESHOLDS = torch.linspace(0.2, 0.9, 15, dtype=torch.float64).float()


class SaliencyMeter(Meter):
    """Per-image IoU, precision and recall at 15 thresholds in [0.2, 0.9] -> mIoU, maxF (%).

    The prediction is ``sigmoid(logit) > threshold`` (strict, as the reference ``eval_sal``);
    pixels labelled 255 are void. IoU is 1 when prediction and ground truth are both empty;
    precision (recall) is 0 without predicted (true) positives. Per threshold the three are
    summed over images; ``mIoU`` is the best mean IoU over thresholds, ``maxF`` the best
    2PR/(P+R) of the mean P and R (beta = 1). An image with no valid pixel is skipped (the
    reference would score it IoU 1; PASCAL saliency maps have no void pixels).
    """

    def _zeros(self) -> dict[str, Tensor]:
        k = len(SALIENCY_THRESHOLDS)
        zeros = {name: torch.zeros(k, dtype=torch.float64) for name in ("iou", "precision", "recall")}
        return {**zeros, "images": torch.zeros((), dtype=torch.int64)}

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        prob = torch.sigmoid(pred[:, 0].float()).flatten(1)  # (B, N)
        target = target.flatten(1)
        valid = target != IGNORE_INDEX
        truth = valid & (target > 0)
        guess = valid & (prob[None] > SALIENCY_THRESHOLDS.to(prob.device)[:, None, None])  # (K, B, N)
        tp, n_guess, n_truth = (x.sum(-1).cpu().double() for x in (guess & truth, guess, truth))
        union = n_guess + n_truth - tp
        scored = valid.any(-1).cpu()  # images with no valid pixel are skipped, not scored IoU 1
        self._add(
            iou=(torch.where(union > 0, tp / union.clamp(min=1), 1.0) * scored).sum(1),
            precision=(tp / n_guess.clamp(min=1)).sum(1),
            recall=(tp / n_truth.clamp(min=1)).sum(1),
            images=scored.sum(),
        )

    def compute(self) -> dict[str, float]:
        n = float(self._state["images"])
        if n == 0:
            return {"mIoU": math.nan, "maxF": math.nan}
        iou, p, r = (self._state[k] / n for k in ("iou", "precision", "recall"))
        f = (2 * p * r / (p + r)).nan_to_num(0.0)  # F = 0 where P = R = 0
        return {"mIoU": 100 * float(iou.max()), "maxF": 100 * float(f.max())}


class Binary(LabelMapKind):
    name = "binary"
    caption = "probability: black 0 .. white 1"

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Batch-balanced BCE: positives weigh the fraction of negative valid pixels, negatives the rest."""
        return mean(*weighted_bce_sum(pred, target))

    def meter(self, spec: TaskSpec) -> Meter:
        return SaliencyMeter()

    def prior_stats(self, target: Tensor, spec: TaskSpec) -> Tensor:
        """(2, H, W): positives and valid pixels per position."""
        valid = target != IGNORE_INDEX
        return torch.stack([((target == 1) & valid).sum(0), valid.sum(0)]).double()

    def prior_map(self, stats: Tensor) -> Tensor:
        """The positive frequency at each position, as a logit."""
        freq = stats[0:1] / stats[1:2].clamp(min=1)
        freq = fill(freq, stats[1:2], stats[0].sum().view(1) / stats[1].sum().clamp(min=1))
        return torch.logit(freq.clamp(1e-6, 1 - 1e-6)).float()

    def decode(self, output: Tensor) -> np.ndarray:
        return torch.sigmoid(output[0]).numpy()

    def picture(self, decoded: np.ndarray) -> np.ndarray:
        return grey(decoded)

    def truth_picture(self, target: Tensor) -> np.ndarray:
        return self.raw_picture(target.numpy())

    def raw_picture(self, array: np.ndarray) -> np.ndarray:
        """Positives white and negatives black (``picture``'s grey scale), ignore (255) in the ignore colour."""
        rgb = grey((array == 1).astype(np.float64))
        rgb[array == IGNORE_INDEX] = IGNORE_COLOUR
        return rgb


BINARY = register_kind(Binary())
