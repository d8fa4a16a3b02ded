"""Evaluation meters, one per task ``kind``, accumulated over a whole evaluation set.

Each meter's state is a fixed list of tensors whose element-wise sum over disjoint parts of the
set equals the state over the whole set (counts, sums, a confusion matrix, a histogram). So a
DDP evaluation runs the meters on each process's shard and calls ``all_reduce()`` once; merging
saved states is ``load_state([a + b for a, b in zip(s1, s2)])``. The state lives on the CPU in
int64 / float64; each batch adds small per-batch reductions to it.

``update(pred, target)`` takes the model's raw output for the task (logits, unnormalised normals,
raw depth; see ``vmt_adapter.tasks`` for targets). ``compute()`` returns plain floats; a meter
that saw no valid pixel returns NaN. Conventions follow the public MTL evaluation code
(Vandenhende et al., MTLoRA), docs/design.md, section 5.4; where this module departs, it says so.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..tasks import IGNORE_INDEX, TaskSpec
from .losses import EDGE_POS_WEIGHT, weighted_bce_sum

# float32 like the probabilities they are compared with, rounded from the float64 grid (as the reference).
SALIENCY_THRESHOLDS = torch.linspace(0.2, 0.9, 15, dtype=torch.float64).float()
NORMALS_BIN_DEG = 0.01  # histogram resolution of the normals median
NORMALS_ACC_DEG = (11.25, 22.5, 30.0)


def _ratio(num: float | Tensor, den: float | Tensor) -> float:
    """``num / den`` as a float, NaN when ``den`` is 0 (an empty evaluation set)."""
    return float(num) / float(den) if float(den) != 0 else math.nan


class Meter(ABC):
    """Sum-reducible accumulator. Subclasses define ``_zeros``, ``update`` and ``compute``."""

    def __init__(self) -> None:
        self.reset()

    @abstractmethod
    def _zeros(self) -> dict[str, Tensor]:
        """The empty state: named CPU tensors, in a fixed order."""

    @abstractmethod
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` the model output, ``target`` the label tensor."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metrics of everything added so far."""

    def reset(self) -> None:
        self._state = self._zeros()

    def state(self) -> list[Tensor]:
        """The accumulated tensors (copies), in a fixed order."""
        return [t.clone() for t in self._state.values()]

    def load_state(self, tensors: Sequence[Tensor]) -> None:
        """Replace the state, e.g. by the sum of several meters' ``state()``."""
        if len(tensors) != len(self._state):
            raise ValueError(f"{type(self).__name__}: expected {len(self._state)} state tensors, got {len(tensors)}")
        for (name, old), new in zip(self._state.items(), tensors):
            if new.shape != old.shape:
                raise ValueError(f"{type(self).__name__}: state {name!r} has shape {tuple(new.shape)}, "
                                 f"expected {tuple(old.shape)}")
        self._state = {name: new.detach().to("cpu", old.dtype).clone()
                       for (name, old), new in zip(self._state.items(), tensors)}

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> None:
        """Sum the state over the processes of ``group``; a no-op without torch.distributed."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        nccl = dist.get_backend(group) == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        for name, t in self._state.items():
            buf = t.to(device)
            dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
            self._state[name] = buf.cpu()

    def _add(self, **batch: Tensor) -> None:
        for name, value in batch.items():
            self._state[name] += value.detach().to("cpu", self._state[name].dtype)


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
            "mIoU": 100 * _ratio(iou.sum(), self.num_classes if total else 0),
            "mIoU_present": 100 * _ratio(iou[seen].sum(), seen.sum()),
            "pixel_acc": 100 * _ratio(tp.sum(), total),
            **{class_iou_key(c): 100 * float(iou[c]) if seen[c] else math.nan for c in range(self.num_classes)},
        }


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


class NormalsMeter(Meter):
    """Angular error (degrees) pooled over valid pixels (target non-zero) of the set.

    The prediction and target are L2-normalised; the angle is ``atan2(|p x g|, p . g)``, accurate
    near 0 degrees where ``acos`` is not. ``mean`` is the benchmark number (the public line's
    online meter names it "rmse"); ``rmse`` is the true root mean square. ``median`` comes from a
    histogram of ``NORMALS_BIN_DEG`` = 0.01 degree bins, so it stays sum-reducible: it is the
    centre of the bin holding the middle pixel, within 0.01 degree of the exact median.
    ``acc_11.25``, ``acc_22.5``, ``acc_30`` are the % of pixels with error below each bound.
    """

    _BINS = round(180 / NORMALS_BIN_DEG)

    def _zeros(self) -> dict[str, Tensor]:
        return {
            "sum": torch.zeros((), dtype=torch.float64),
            "sum_sq": torch.zeros((), dtype=torch.float64),
            "pixels": torch.zeros((), dtype=torch.int64),
            "below": torch.zeros(len(NORMALS_ACC_DEG), dtype=torch.int64),
            "histogram": torch.zeros(self._BINS, dtype=torch.int64),
        }

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target.ne(0).any(dim=1)  # (B, H, W)
        p = F.normalize(pred.float(), dim=1).movedim(1, -1)[valid]  # (P, 3)
        g = F.normalize(target.float(), dim=1).movedim(1, -1)[valid]
        err = torch.rad2deg(torch.atan2(torch.linalg.cross(p, g).norm(dim=-1), (p * g).sum(-1))).double()
        bins = (err / NORMALS_BIN_DEG).long().clamp(0, self._BINS - 1)
        self._add(
            sum=err.sum(),
            sum_sq=err.square().sum(),
            pixels=torch.tensor(err.numel()),
            below=torch.stack([(err < bound).sum() for bound in NORMALS_ACC_DEG]),
            histogram=torch.bincount(bins, minlength=self._BINS),
        )

    def compute(self) -> dict[str, float]:
        n = int(self._state["pixels"])
        middle = int(torch.searchsorted(self._state["histogram"].cumsum(0), (n + 1) // 2)) if n else 0
        out = {
            "mean": _ratio(self._state["sum"], n),
            "rmse": math.sqrt(_ratio(self._state["sum_sq"], n)),
            "median": (middle + 0.5) * NORMALS_BIN_DEG if n else math.nan,
        }
        for bound, count in zip(NORMALS_ACC_DEG, self._state["below"].tolist()):
            out[f"acc_{bound:g}"] = 100 * _ratio(count, n)
        return out


class DepthMeter(Meter):
    """RMSE and log-RMSE (natural log) pooled over valid pixels (target > 0) of the set.

    As the reference ``DepthMeter``, the prediction is clamped to >= 1e-9 before both errors.
    """

    def _zeros(self) -> dict[str, Tensor]:
        return {
            "sum_sq": torch.zeros((), dtype=torch.float64),
            "sum_sq_log": torch.zeros((), dtype=torch.float64),
            "pixels": torch.zeros((), dtype=torch.int64),
        }

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target > 0
        p, g = pred.double().clamp(min=1e-9)[valid], target.double()[valid]
        self._add(
            sum_sq=(p - g).square().sum(),
            sum_sq_log=(p.log() - g.log()).square().sum(),
            pixels=torch.tensor(g.numel()),
        )

    def compute(self) -> dict[str, float]:
        n = self._state["pixels"]
        return {
            "rmse": math.sqrt(_ratio(self._state["sum_sq"], n)),
            "log_rmse": math.sqrt(_ratio(self._state["sum_sq_log"], n)),
        }


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
        return {"loss": _ratio(self._state["sum"], self._state["pixels"])}


METERS: dict[str, Callable[[TaskSpec], Meter]] = {
    "classes": lambda spec: ClassesMeter(spec.channels),
    "binary": lambda spec: SaliencyMeter(),
    "normals": lambda spec: NormalsMeter(),
    "depth": lambda spec: DepthMeter(),
    "edge": lambda spec: EdgeMeter(),
}


def build_meters(tasks: Sequence[TaskSpec]) -> dict[str, Meter]:
    """A fresh meter per task, chosen by ``kind``."""
    for spec in tasks:
        if spec.kind not in METERS:
            raise ConfigError(f"task {spec.name}: no metric for kind {spec.kind!r}; known kinds: {', '.join(METERS)}")
    return {spec.name: METERS[spec.kind](spec) for spec in tasks}


def headline(spec: TaskSpec, metrics: Mapping[str, float]) -> float:
    """The number benchmark tables report for this task (``spec.headline``)."""
    return metrics[spec.headline]
