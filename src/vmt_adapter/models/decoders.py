"""Per-task decoders of the benchmark's public code (MTLoRA / Polyhistor line, DESIGN.md 1.2).

Each tapped map is brought to [18, 36, 72, 144] channels by a bias-free 1x1 conv, all are
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
            F.interpolate(r(f), size=fine, mode="bilinear", align_corners=False) if i else r(f)
            for i, (r, f) in enumerate(zip(self.reduce, feats))
        ]
        out = self.head(torch.cat(maps, dim=1))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
