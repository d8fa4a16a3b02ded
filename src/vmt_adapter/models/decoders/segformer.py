"""``segformer``: the all-MLP head of SegFormer (Xie et al., NeurIPS 2021), one per task.

Each tap (channel-normalised, see ``base.channel_norm``) goes through its own linear layer to a
common width E, is upsampled to the finest tap, the four are concatenated (4E), fused by a 1x1
conv -> BN -> ReLU to E, and a 1x1 conv predicts the task's channels, upsampled to the input
size. SegFormer uses E = 256 for its small models; here E = 64 x ``ratio`` (``model.decoder_ratio``
4 gives 256).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Decoder, channel_norm, check_taps

UNIT = 64


class SegFormerHead(Decoder):
    def __init__(self, in_channels: list[int], out_channels: int, ratio: int = 4, tap_norm: bool = True) -> None:
        super().__init__()
        check_taps(in_channels, 4)
        self.norm = channel_norm if tap_norm else nn.Identity()
        width = UNIT * ratio
        self.embed = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)  # a linear layer per token
        self.fuse = nn.Sequential(nn.Conv2d(4 * width, width, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.pred = nn.Conv2d(width, out_channels, 1)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """``feats``: the tapped maps (B, C_i, H_i, W_i), finest first; returns (B, out, *size)."""
        fine = feats[0].shape[-2:]
        maps = [F.interpolate(e(self.norm(f)), size=fine, mode="bilinear", align_corners=False)
                for e, f in zip(self.embed, feats)]
        out = self.pred(self.fuse(torch.cat(maps, dim=1)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
