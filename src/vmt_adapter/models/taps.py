r"""Task maps kept factored, so that VMT's up-projection folds into the decoders' first 1x1 convolution.

At a tap, VMT-Adapter's task stream t is the shared map plus a low-rank offset (``adapters/vmt.py``)::

    x_t = m + W_t u + b_t        m: (C, H, W) shared, u: (k, H, W) shared code, W_t: (C, k), b_t: (C,)

When nothing non-linear sits between the tap and a decoder's first 1x1 convolution R (r x C), as with
``model.taps: stage`` (a Swin stage output is only re-laid out) and ``model.tap_norm: false``::

    R x_t = R m + (R W_t) u + R b_t

so the decoder multiplies the k-channel code by the small (r, k) product R W_t instead of anyone
making the T full-width streams: T x k x r per pixel instead of T x k x C, and no (T, B, C, H, W)
tensor. Exact up to floating-point rounding (``tests/test_methods.py`` checks outputs and gradients
against the dense form).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LowRankMap:
    """One task's map ``main + weight @ code + bias`` (NCHW), never made dense unless asked."""

    main: torch.Tensor  # B, C, H, W (shared by the tasks)
    code: torch.Tensor  # B, k, H, W (shared by the tasks)
    weight: torch.Tensor  # C, k (this task's)
    bias: torch.Tensor  # C (this task's)

    def dense(self) -> torch.Tensor:
        """The map itself, (B, C, H, W), for a consumer that is not a 1x1 convolution."""
        return self.main + F.conv2d(self.code, self.weight[:, :, None, None], self.bias)

    def project(self, conv_weight: torch.Tensor) -> torch.Tensor:
        """``conv2d(map, conv_weight)`` for a bias-free 1x1 convolution weight (r, C, 1, 1), via the folded (r, k)."""
        r = conv_weight.flatten(1)  # r, C
        return (F.conv2d(self.main, conv_weight)
                + F.conv2d(self.code, (r @ self.weight)[:, :, None, None], r @ self.bias))


@dataclass
class FactoredTap:
    """One tap level for T tasks: the shared map and code, and the T tasks' (C, k) weights and (C,) biases."""

    main: torch.Tensor  # B, C, H, W
    code: torch.Tensor  # B, k, H, W
    weights: torch.Tensor  # T, C, k
    biases: torch.Tensor  # T, C

    def task(self, t: int) -> LowRankMap:
        return LowRankMap(self.main, self.code, self.weights[t], self.biases[t])

    def parts(self) -> list[torch.Tensor]:
        """The tensors a benchmark loss reads so that backward reaches every adapter parameter."""
        return [self.main, self.code, self.weights, self.biases]


Tap = torch.Tensor | FactoredTap  # (T or 1, B, C, H, W), or factored


def task_input(tap: Tap, t: int) -> torch.Tensor | LowRankMap:
    """Task ``t``'s map of a tap: its slice, the shared one (leading 1), or its factored map."""
    if isinstance(tap, FactoredTap):
        return tap.task(t)
    return tap[t if tap.shape[0] > 1 else 0]
