"""The plain ViT family (timm's ``VisionTransformer``, patch 16): one scale, four taps through a
parameter-free simple feature pyramid.

A plain ViT keeps one token grid (stride 16) through all its blocks. As in ViTDet (Li et al., ECCV
2022), the decoders' four scales come from evenly spaced blocks (for depth 12: blocks 3, 6, 9, 12),
resampled to strides 4, 8, 16 and 32: bilinear up-sampling by 4 and 2, identity, and 2x2 max
pooling. ViTDet learns its up-sampling (deconvolutions); here it has no parameters, so that every
trainable parameter belongs to a method or a decoder and the counts stay comparable across families.
Prefix tokens (class, register) are dropped before the maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from .base import BackboneFamily, Tapped, TapRunner, run_blocks, run_tap

_SCALES = (4.0, 2.0, 1.0, 0.5)  # stride 16 -> 4, 8, 16, 32


class ViTFamily(BackboneFamily):
    name = "vit"
    module_type = VisionTransformer
    layout = "timm-vit/1"
    variants = {
        # timm's ViT-Ti/S/B at patch 16 (DeiT / AugReg layouts); input 448 as for Swin on PASCAL-Context.
        "vit_tiny": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, img_size=448),
        "vit_small": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, img_size=448),
        "vit_base": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, img_size=448),
        # For tests and quick experiments (about 0.45 M parameters).
        "vit_nano": dict(patch_size=16, embed_dim=96, depth=4, num_heads=3, img_size=128),
    }

    def build(self, variant: str, img_size: int | None, drop_path: float | None = None) -> VisionTransformer:
        # dynamic_img_size: the position embedding is resampled to whatever grid the input gives;
        # timm's default drop-path rate is 0.
        return VisionTransformer(num_classes=0, dynamic_img_size=True, **self.arguments(variant, img_size, drop_path))

    def filter_state(self, state: dict[str, torch.Tensor], model: VisionTransformer,
                     own_layout: bool) -> dict[str, torch.Tensor]:
        return checkpoint_filter_fn(state, model)  # timm-format keys; resamples the position embedding

    @staticmethod
    def tap_indices(model: VisionTransformer) -> list[int]:
        depth = len(model.blocks)
        return [(i + 1) * depth // 4 - 1 for i in range(4)]

    def stages(self, model: VisionTransformer) -> list[list[nn.Module]]:
        bounds = [-1, *self.tap_indices(model)]
        return [list(model.blocks[a + 1: b + 1]) for a, b in zip(bounds, bounds[1:])]

    def run(self, model: VisionTransformer, x: torch.Tensor, tap: TapRunner = run_tap,
            recompute: bool = False) -> Iterator[Tapped]:
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for stage in self.stages(model):
            out = run_blocks(stage, x, tap, recompute)
            yield out
            x = out.main

    def tap_forward(self, block: nn.Module, x: torch.Tensor,
                    mlp: Callable[[torch.Tensor], tuple[torch.Tensor, Any]]) -> Tapped:
        # timm's Block.forward (no attention mask), step for step
        x = x + block.drop_path1(block.ls1(block.attn(block.norm1(x))))
        m, extra = mlp(block.norm2(x))
        return Tapped(x + block.drop_path2(block.ls2(m)), extra)

    def maps(self, model: VisionTransformer, tokens: torch.Tensor, image_hw: tuple[int, int],
             level: int, layout: str = "stage") -> torch.Tensor:
        h, w = model.patch_embed.dynamic_feat_size(tuple(image_hw))
        lead = tokens.shape[:-2]
        grid = tokens[..., model.num_prefix_tokens:, :].reshape(-1, h, w, tokens.shape[-1]).permute(0, 3, 1, 2)
        scale = _SCALES[level]
        if scale > 1:
            grid = F.interpolate(grid, scale_factor=scale, mode="bilinear", align_corners=False)
        elif scale < 1:
            grid = F.max_pool2d(grid, 2, ceil_mode=True)
        return grid.reshape(*lead, *grid.shape[1:])

    def tap_channels(self, model: VisionTransformer, layout: str = "stage") -> list[int]:
        return [model.embed_dim] * 4

    def no_weight_decay(self, model: VisionTransformer) -> set[str]:
        exempt = model.no_weight_decay()  # top-level names (pos_embed, cls_token, ...)
        return {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in exempt}
