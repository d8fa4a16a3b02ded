"""``depth``: metric depth: L1 where the target is positive, RMSE and log-RMSE."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..tasks import TaskSpec
from .base import Meter, TaskKind, heat, masked_sum, mean, ratio, register_kind, warp

# Colour stops of the raw depth preview (near = dark purple, far = yellow).
_STOPS = np.array([(13, 8, 135), (126, 3, 168), (204, 71, 120), (248, 149, 64), (240, 249, 33)], np.float64)


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
            "rmse": math.sqrt(ratio(self._state["sum_sq"], n)),
            "log_rmse": math.sqrt(ratio(self._state["sum_sq_log"], n)),
        }


class Depth(TaskKind):
    name = "depth"
    caption = "dark near .. bright far (this image's range)"

    def resample(self, value, geometry, grid, pad):
        """Nearest; divided by the zoom factor, as the reference ``ScaleNRotate`` (a zoomed-in object looks as it
        would from a camera that much closer)."""
        return warp(torch.from_numpy(value.astype(np.float32) / geometry.scale)[None], grid, "nearest")

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """L1 depth error where the target depth is positive."""
        return mean(*masked_sum((pred - target).abs(), target > 0))

    def meter(self, spec: TaskSpec) -> Meter:
        return DepthMeter()

    def decode(self, output: Tensor) -> np.ndarray:
        return output[0].clamp(min=0).numpy()

    def picture(self, decoded: np.ndarray) -> np.ndarray:
        return heat(decoded)

    def truth_picture(self, target: Tensor) -> np.ndarray:
        return heat(target[0].numpy())

    def raw_picture(self, array: np.ndarray) -> np.ndarray:
        """Heat map over the valid range; 0 (invalid) in black."""
        valid = array > 0
        rgb = np.zeros(array.shape + (3,), np.uint8)
        if valid.any():
            lo, hi = array[valid].min(), array[valid].max()
            s = (array[valid] - lo) / max(hi - lo, 1e-6) * (len(_STOPS) - 1)
            stops = np.arange(len(_STOPS))
            rgb[valid] = np.stack([np.interp(s, stops, _STOPS[:, c]) for c in range(3)], axis=-1).round()
        return rgb


DEPTH = register_kind(Depth())
