"""``classes``: a label map of C classes (semantic segmentation, human parts): cross-entropy, mIoU."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..tasks import IGNORE_INDEX, TaskSpec
from .base import LabelMapKind, Meter, fill, label_colours, masked_sum, mean, ratio, register_kind


def class_iou_key(index: int) -> str:
    """The ``compute()`` key of one class's IoU (label-map tasks)."""
    return f"IoU_{index}"


class ClassesMeter(Meter):
    """Confusion matrix over valid pixels (label != 255) -> mIoU, mIoU_present, pixel_acc (all %).

    IoU_c = TP / (TP + FP + FN) accumulated over the set, background included. ``mIoU`` (the
    headline) follows the reference code (MTLoRA / Vandenhende ``eval_semseg.py``): the mean over
    all classes, a class absent from both prediction and ground truth counting as IoU 0.
    ``mIoU_present`` leaves such classes out of the mean instead. Both agree whenever every class
    occurs, as on the full PASCAL-Context val set; on small subsets they can differ a lot.
    ``IoU_<c>`` (``class_iou_key``) is each class's IoU (%), NaN for a class absent from both, so
    that a table can tell "never seen" from "always missed".
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        super().__init__()

    def _zeros(self) -> dict[str, Tensor]:
        return {"confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)}

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        n = self.num_classes
        valid = target != IGNORE_INDEX
        truth, guess = target[valid], pred.argmax(dim=1)[valid]
        if truth.numel() and not (int(truth.min()) >= 0 and int(truth.max()) < n):
            raise ValueError(f"class label outside 0..{n - 1} (and not {IGNORE_INDEX}) in target")
        self._add(confusion=torch.bincount(truth * n + guess, minlength=n * n).view(n, n))

    def compute(self) -> dict[str, float]:
        conf = self._state["confusion"].double()  # rows: ground truth, columns: prediction
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        iou = tp / union.clamp(min=1)
        seen = union > 0
        total = float(conf.sum())
        return {
            "mIoU": 100 * ratio(iou.sum(), self.num_classes if total else 0),
            "mIoU_present": 100 * ratio(iou[seen].sum(), seen.sum()),
            "pixel_acc": 100 * ratio(tp.sum(), total),
            **{class_iou_key(c): 100 * float(iou[c]) if seen[c] else math.nan for c in range(self.num_classes)},
        }


class Classes(LabelMapKind):
    name, class_ids = "classes", True

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy over pixels whose label is not 255."""
        per_pixel = F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX, reduction="none")
        return mean(*masked_sum(per_pixel, target != IGNORE_INDEX))

    def meter(self, spec: TaskSpec) -> Meter:
        return ClassesMeter(spec.channels)

    def prior_stats(self, target: Tensor, spec: TaskSpec) -> Tensor:
        """(C, H, W) label counts per position over the batch."""
        valid = target != IGNORE_INDEX
        hot = F.one_hot(torch.where(valid, target, 0), spec.channels).permute(0, 3, 1, 2).double()
        return (hot * valid.unsqueeze(1)).sum(0)

    def prior_map(self, stats: Tensor) -> Tensor:
        """The majority label at each position, as confident logits."""
        counts = fill(stats, stats.sum(0, keepdim=True), stats.sum((1, 2)))
        return F.one_hot(counts.argmax(0), stats.shape[0]).permute(2, 0, 1).float() * 20.0

    def decode(self, output: Tensor) -> np.ndarray:
        return output.argmax(0).numpy()

    def picture(self, decoded: np.ndarray) -> np.ndarray:
        return label_colours(decoded)

    def truth_picture(self, target: Tensor) -> np.ndarray:
        return label_colours(target.numpy())

    def raw_picture(self, array: np.ndarray) -> np.ndarray:
        return label_colours(array)


CLASSES = register_kind(Classes())
