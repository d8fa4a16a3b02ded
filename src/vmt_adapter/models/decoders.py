"""Per-task decoders of the benchmark's public code (MTLoRA / Polyhistor line, DESIGN.md 1.2).

Each tapped map is first layer-normalised over its channels (no parameters: Swin's stage outputs
are residual streams with large per-channel offsets and small spread, which made the BatchNorm
below depend on batch statistics its running averages could not match; dense-prediction Swin
backbones add a norm per output for the same reason), then brought to [18, 36, 72, 144] channels
by a bias-free 1x1 conv; all are
upsampled to the finest tap and concatenated (270 channels), then 1x1 conv -> BN -> ReLU ->
1x1 conv to the task's channels, and bilinear upsampling to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCED = (18, 36, 72, 144)


class MultiScaleDecoder(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, reduced: tuple[int, ...] = REDUCED,
                 hidden_ratio: int = 4) -> None:
        super().__init__()
        if len(in_channels) != len(reduced):
            raise ValueError(f"decoder expects {len(reduced)} taps, got {len(in_channels)}")
        self.reduce = nn.ModuleList(nn.Conv2d(c, r, 1, bias=False) for c, r in zip(in_channels, reduced))
        fused = sum(reduced)  # 270
        self.head = nn.Sequential(
            nn.Conv2d(fused, fused * hidden_ratio, 1),  # 270 -> 1080
            nn.BatchNorm2d(fused * hidden_ratio),
            nn.ReLU(inplace=True),
            nn.Conv2d(fused * hidden_ratio, out_channels, 1),
        )

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """``feats``: the tapped maps (B, C_i, H_i, W_i), finest first; returns (B, out, *size)."""
        fine = feats[0].shape[-2:]
        maps = [
            F.interpolate(r(_channel_norm(f)), size=fine, mode="bilinear", align_corners=False) if i
            else r(_channel_norm(f))
            for i, (r, f) in enumerate(zip(self.reduce, feats))
        ]
        out = self.head(torch.cat(maps, dim=1))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def _channel_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free layer norm over the channels of an NCHW map."""
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2]).permute(0, 3, 1, 2)
