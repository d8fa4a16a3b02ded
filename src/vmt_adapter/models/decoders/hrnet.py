"""``hrnet``: the per-task decoder of the benchmark's public code (MTLoRA / Polyhistor line, docs/design.md, section 2),
an HRNet-style fusion head.

Each tapped map is first layer-normalised over its channels (``base.channel_norm``, no parameters; a project
departure, off with ``model.tap_norm: false``), then brought to [18, 36, 72, 144] channels by a bias-free 1x1 conv;
all are upsampled to the finest tap and concatenated (270 channels), then 1x1 conv -> BN -> ReLU -> 1x1 conv to the
task's channels, and bilinear upsampling to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..recompute import recomputed
from ..taps import LowRankMap
from .base import Decoder, channel_norm, check_taps

REDUCED = (18, 36, 72, 144)


class MultiScaleDecoder(Decoder):
    """``ratio`` sets the fusion layer's hidden width, ``ratio`` x 270 (4 = the benchmark's 1080).

    ``fusion`` (``FUSIONS``): "concat" (the public head) upsamples the reduced maps, concatenates them, then runs
    the 270 -> 1080 conv at the finest resolution; "per_level" runs the conv's block for each level at that
    level's own resolution, then upsamples and sums: the same function (a 1x1 conv commutes with bilinear
    upsampling), fewer multiply-adds, equal outputs up to float rounding.
    ``grad_checkpointing`` recomputes the fusion (reductions, upsampling, concatenation, first conv) in backward
    instead of keeping its 270-channel maps at the finest tap's resolution; BatchNorm stays outside, since a
    recompute would update its running statistics a second time.
    """

    FUSIONS = ("concat", "per_level")

    def __init__(self, in_channels: list[int], out_channels: int, ratio: int = 4, tap_norm: bool = True) -> None:
        super().__init__()
        check_taps(in_channels, len(REDUCED))
        self.norm = channel_norm if tap_norm else nn.Identity()
        self.accepts_factored = not tap_norm  # nothing but the 1x1 reduction between a tap and its use
        self.reduce = nn.ModuleList(nn.Conv2d(c, r, 1, bias=False) for c, r in zip(in_channels, REDUCED))
        fused = sum(REDUCED)  # 270
        self.head = nn.Sequential(
            nn.Conv2d(fused, fused * ratio, 1),  # 270 -> 1080
            nn.BatchNorm2d(fused * ratio),
            nn.ReLU(inplace=True),
            nn.Conv2d(fused * ratio, out_channels, 1),
        )

    def _reduce(self, i: int, f: torch.Tensor | LowRankMap) -> torch.Tensor:
        if isinstance(f, LowRankMap):  # VMT's up-projection folded into the reduction (models/taps)
            return f.project(self.reduce[i].weight)
        return self.reduce[i](self.norm(f))

    def forward(self, feats: list[torch.Tensor | LowRankMap], size: tuple[int, int]) -> torch.Tensor:
        """``feats``: the tapped maps (B, C_i, H_i, W_i) or factored ones, finest first; returns (B, out, *size)."""
        out = self.head[1:](recomputed(self.grad_checkpointing, self._fuse, *feats))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def _fuse(self, *feats: torch.Tensor | LowRankMap) -> torch.Tensor:
        """Every tap reduced, brought to the finest tap's resolution, concatenated, then the first 1x1 conv."""
        maps = [self._reduce(i, f) for i, f in enumerate(feats)]
        fine = maps[0].shape[-2:]
        if self.fusion == "per_level":
            conv = self.head[0]
            blocks = conv.weight.split(list(REDUCED), dim=1)
            out = F.conv2d(maps[0], blocks[0], conv.bias)
            for m, w in zip(maps[1:], blocks[1:]):
                out = out + F.interpolate(F.conv2d(m, w), size=fine, mode="bilinear", align_corners=False)
            return out
        maps = [maps[0]] + [F.interpolate(m, size=fine, mode="bilinear", align_corners=False) for m in maps[1:]]
        return self.head[0](torch.cat(maps, dim=1))

