"""What every task kind shares: the ``TaskKind`` interface and registry, and the pieces several kinds use.

A task kind (``TaskSpec.kind``: classes, binary, edge, normals, depth) says everything the package does
with a task of that kind, in one module per kind: how its label map is resampled by a training geometry,
its loss, its evaluation meter, its constant prior, how an output is decoded and drawn, and how a raw
label map and a target tensor are drawn. A new kind is its module and an import line in ``kinds/__init__``.

Shared here: the loss reductions (means over valid pixels, global across processes inside
``global_counts``), the sum-reducible ``Meter`` base, the prior's fallback, the palettes and the warp.
"""

from __future__ import annotations

import contextlib
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..tasks import IGNORE_INDEX, TaskSpec


class Geometry(Protocol):
    """What a kind's resampling reads of ``data.transforms.Geometry``."""

    scale: float

    def normal_map(self) -> np.ndarray: ...


class TaskKind(ABC):
    """One kind of dense task."""

    name: str = ""
    raw_channels: tuple[int, ...] = ()  # a raw array's shape after the image's (H, W): normals (3,)
    class_ids: bool = False  # outputs decode to class ids: label PNGs, legends and class names apply
    caption: str = ""  # what a picture of a prediction means, under a tile without a class legend

    @abstractmethod
    def resample(self, value: np.ndarray, geometry: Geometry, grid: Tensor | None, pad: str) -> Tensor:
        """The raw array (``data.transforms``' layout) resampled on ``grid`` as its contract tensor."""

    @abstractmethod
    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean over the batch's valid pixels (0, attached to the graph, when there is none)."""

    @abstractmethod
    def meter(self, spec: TaskSpec) -> Meter:
        """A fresh evaluation meter for ``spec``."""

    def prior_stats(self, target: Tensor, spec: TaskSpec) -> Tensor:
        """Per-position statistics of a batch of targets, summable over batches (default: sums of the valid
        values and their count, for the mean valid value at each position)."""
        return mean_stats(target, spec)

    def prior_map(self, stats: Tensor) -> Tensor:
        """The constant output map (C, H, W) the summed statistics call for (default: the mean)."""
        return mean_map(stats)

    @abstractmethod
    def decode(self, output: Tensor) -> np.ndarray:
        """One model output (C, H, W) as ``predict`` returns it."""

    @abstractmethod
    def picture(self, decoded: np.ndarray) -> np.ndarray:
        """RGB uint8 picture of a decoded output."""

    @abstractmethod
    def truth_picture(self, target: Tensor) -> np.ndarray:
        """RGB picture of a target tensor, in the colours of ``picture``."""

    @abstractmethod
    def raw_picture(self, array: np.ndarray) -> np.ndarray:
        """RGB picture of a raw label array (dataset previews)."""

    def draw(self, output: Tensor) -> np.ndarray:
        """RGB picture of one model output (C, H, W): ``picture(decode(output))``."""
        return self.picture(self.decode(output))


KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Make ``kind`` available as ``TaskSpec.kind == kind.name``."""
    KINDS[kind.name] = kind
    return kind


def kind_of(spec: TaskSpec) -> TaskKind:
    """The kind object of ``spec``, or a one-line error naming the task."""
    if spec.kind not in KINDS:
        raise ConfigError(f"task {spec.name}: unknown task kind {spec.kind!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[spec.kind]


# ---------------------------------------------------------------------------------------------- losses

def masked_sum(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
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


def mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count``, exactly 0 (with a gradient path) when ``count`` is 0."""
    scale = dist.get_world_size() if getattr(_GLOBAL_COUNTS, "on", False) else 1
    return total * scale / _global(count).clamp(min=1).to(total.dtype)


def weighted_bce_sum(logits: Tensor, target: Tensor, pos_weight: float | None = None) -> tuple[Tensor, Tensor]:
    """Weighted BCE summed over valid pixels, and the valid pixel count.

    ``logits`` is (B, 1, H, W), ``target`` int64 (B, H, W) in {0, 1, 255}. Positives weigh
    ``pos_weight`` and negatives ``1 - pos_weight``; ``None`` balances them on this batch
    (``pos_weight`` = fraction of negative valid pixels). Shared by the saliency and edge kinds.
    """
    valid = target != IGNORE_INDEX
    positive = valid & (target > 0)
    weight: float | Tensor = (pos_weight if pos_weight is not None
                              else _fraction((valid & ~positive).sum(), valid.sum()).to(logits.dtype))
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], positive.to(logits.dtype), reduction="none")
    per_pixel = per_pixel * torch.where(positive, weight, 1 - weight)
    return masked_sum(per_pixel, valid)


# ---------------------------------------------------------------------------------------------- meters

def ratio(num: float | Tensor, den: float | Tensor) -> float:
    """``num / den`` as a float, NaN when ``den`` is 0 (an empty evaluation set)."""
    return float(num) / float(den) if float(den) != 0 else math.nan


class Meter(ABC):
    """Sum-reducible accumulator. Subclasses define ``_zeros``, ``update`` and ``compute``.

    Its state is a fixed list of tensors whose element-wise sum over disjoint parts of a set equals the
    state over the whole set (counts, sums, a confusion matrix, a histogram), kept on the CPU in int64 /
    float64: a DDP evaluation runs the meters on each shard and calls ``all_reduce()`` once.
    ``update(pred, target)`` takes the model's raw output; ``compute()`` returns floats, NaN without data.
    """

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


# ----------------------------------------------------------------------------------------------- prior

def fill(per_pos: Tensor, count: Tensor, whole: Tensor) -> Tensor:
    """Per-position statistic where a position saw a valid pixel, else the split-wide one."""
    return torch.where(count > 0, per_pos, whole.view(-1, 1, 1).expand_as(per_pos))


def mean_stats(target: Tensor, spec: TaskSpec) -> Tensor:
    """(C + 1, H, W): sum of valid values and valid count per position (normals: non-zero; depth: > 0)."""
    valid = target.abs().sum(1, keepdim=True) > 0 if target.shape[1] == 3 else target > 0
    return torch.cat([(target * valid).sum(0), valid.sum(0)]).double()


def mean_map(stats: Tensor) -> Tensor:
    sums, count = stats[:-1], stats[-1:]
    average = sums / count.clamp(min=1)
    return fill(average, count, sums.sum((1, 2)) / count.sum().clamp(min=1)).float()


# -------------------------------------------------------------------------------------------- pictures

IGNORE_COLOUR = (96, 96, 96)
# Label palette: background black, then distinct saturated colours (cycled for larger ids).
PALETTE = np.array(
    [
        (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    ],
    np.uint8,
)  # fmt: skip


def label_colours(x: np.ndarray) -> np.ndarray:
    """Label map -> RGB; 255 (ignore) in grey."""
    x = x.astype(np.int64)
    rgb = PALETTE[np.where(x == 0, 0, (x - 1) % (len(PALETTE) - 1) + 1)]
    rgb[x == 255] = IGNORE_COLOUR
    return rgb


def grey(p: np.ndarray) -> np.ndarray:
    """Probabilities (or {0, 1} labels) in [0, 1] -> grey levels, black 0 to white 1."""
    return np.repeat((p.clip(0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def heat(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (probabilities) or any range (depth, rescaled) -> RGB (matplotlib's inferno)."""
    from matplotlib import colormaps  # only where a prediction is drawn

    lo, hi = (0.0, 1.0) if x.min() >= 0 and x.max() <= 1 else (float(x.min()), float(x.max()))
    return (colormaps["inferno"]((x - lo) / max(hi - lo, 1e-6))[..., :3] * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------- warping

def warp(chw: Tensor, grid: Tensor | None, mode: str) -> Tensor:
    """Resample a (C, H, W) float tensor on ``grid``; outside samples are zero."""
    if grid is None:
        return chw.contiguous()
    return F.grid_sample(chw[None], grid, mode=mode, padding_mode="zeros", align_corners=False)[0]


class LabelMapKind(TaskKind):
    """A kind whose targets are integer label maps with 255 ignore (classes, binary, edge): resampled nearest,
    outside the source 255 (``pad="ignore"``) or 0 (``"zero"``)."""

    def resample(self, value: np.ndarray, geometry: Geometry, grid: Tensor | None, pad: str) -> Tensor:
        # Shift by one so that zero padding marks outside pixels, then map them to ignore.
        shifted = warp(torch.from_numpy(value.astype(np.float32) + 1.0)[None], grid, "nearest")[0]
        outside = 0.0 if pad == "zero" else float(IGNORE_INDEX)
        return torch.where(shifted == 0, outside, shifted - 1.0).round().long()

