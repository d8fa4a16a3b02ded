"""``normals``: unit surface normals (camera frame): L1 on normalised predictions, angular error."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..tasks import TaskSpec
from .base import Meter, TaskKind, masked_sum, mean, ratio, register_kind, warp

NORMALS_BIN_DEG = 0.01  # histogram resolution of the normals median
NORMALS_ACC_DEG = (11.25, 22.5, 30.0)


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
            "mean": ratio(self._state["sum"], n),
            "rmse": math.sqrt(ratio(self._state["sum_sq"], n)),
            "median": (middle + 0.5) * NORMALS_BIN_DEG if n else math.nan,
        }
        for bound, count in zip(NORMALS_ACC_DEG, self._state["below"].tolist()):
            out[f"acc_{bound:g}"] = 100 * ratio(count, n)
        return out


def normals_colours(n: np.ndarray) -> np.ndarray:
    """Unit normals -> RGB as in the PASCAL PNGs (x * 127.5 + 127.5); zero (invalid) in black."""
    rgb = np.round((n + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    rgb[~np.any(n != 0, axis=-1)] = 0
    return rgb


class Normals(TaskKind):
    name, raw_channels = "normals", (3,)
    caption = "RGB = (x right, y up, z out) / 2 + 1/2"

    def resample(self, value, geometry, grid, pad):
        """Rotate with the image, resample bilinearly, renormalise; validity follows nearest resampling."""
        n = value.astype(np.float32) @ geometry.normal_map().T.astype(np.float32)
        chw = torch.from_numpy(np.ascontiguousarray(n.transpose(2, 0, 1)))
        valid = (chw.abs().sum(dim=0, keepdim=True) > 0).float()
        chw = warp(chw, grid, "bilinear")
        valid = warp(valid, grid, "nearest")
        norm = chw.square().sum(dim=0, keepdim=True).sqrt()  # faster than Tensor.norm over dim 0 on CPU
        keep = (valid > 0.5) & (norm > 1e-6)
        return torch.where(keep, chw / norm.clamp_min(1e-6), torch.zeros_like(chw))

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """L1 between the L2-normalised prediction and the target normal, where the target is non-zero."""
        valid = target.ne(0).any(dim=1, keepdim=True)
        return mean(*masked_sum((F.normalize(pred, dim=1) - target).abs(), valid))

    def meter(self, spec: TaskSpec) -> Meter:
        return NormalsMeter()

    def decode(self, output: Tensor) -> np.ndarray:
        return F.normalize(output, dim=0).permute(1, 2, 0).numpy()

    def picture(self, decoded: np.ndarray) -> np.ndarray:
        return normals_colours(decoded)

    def truth_picture(self, target: Tensor) -> np.ndarray:
        return normals_colours(target.permute(1, 2, 0).numpy())

    def raw_picture(self, array: np.ndarray) -> np.ndarray:
        return normals_colours(array)


NORMALS = register_kind(Normals())
