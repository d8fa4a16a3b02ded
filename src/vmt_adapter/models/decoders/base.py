"""What every dense head shares: the tap check and the parameter-free per-tap channel norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_taps(in_channels: list[int], expected: int) -> None:
    if len(in_channels) != expected:
        raise ValueError(f"decoder expects {expected} taps, got {len(in_channels)}")


def channel_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free layer norm over the channels of an NCHW map.

    Why: Swin's stage outputs are residual streams with large per-channel offsets and small spread,
    which made the heads' BatchNorm depend on batch statistics its running averages could not match;
    dense-prediction Swin backbones add a norm per output for the same reason.
    """
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2]).permute(0, 3, 1, 2)
