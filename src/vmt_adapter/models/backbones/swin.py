"""The Swin Transformer family (timm's ``SwinTransformer``): four stages, a tap after each.

Taps (``model.taps``): ``stage`` (the project's default) reads the stage outputs before the next
stage's patch merging (C, 2C, 4C, 8C channels at strides 4, 8, 16, 32); ``merged`` (the public
MTLoRA / Polyhistor code's layout) passes the first three through the next stage's frozen patch
merging (2C, 4C, 8C, 8C at strides 8, 16, 32, 32). Tokens are laid out (B, H, W, C) as timm's stages
pass them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from timm.layers import resize_rel_pos_bias_table
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn
from torch import nn

from .base import BackboneFamily, Tapped, TapRunner, run_blocks, run_tap

_BUFFERS = ("relative_position_index", "attn_mask")  # rebuilt by the model itself, never loaded


class SwinFamily(BackboneFamily):
    name = "swin"
    module_type = SwinTransformer
    layout = "timm-swin/1"  # keys as timm 1.x's SwinTransformer names them
    variants = {
        # ImageNet layouts of timm / Microsoft Swin; default input 448 as in the PASCAL-Context recipe.
        "swin_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, img_size=448),
        "swin_small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7, img_size=448),
        "swin_base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=7, img_size=448),
        # The embedded default's small Swin (about 5 M parameters), pretrained by `vmt pretrain`.
        "swin_nano": dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=4, img_size=128),
    }

    def build(self, variant: str, img_size: int | None, drop_path: float | None = None) -> SwinTransformer:
        # The window attention pads, so inputs of any size work; timm's default drop-path rate is 0.1.
        return SwinTransformer(num_classes=0, strict_img_size=False, **self.arguments(variant, img_size, drop_path))

    def filter_state(self, state: dict[str, torch.Tensor], model: SwinTransformer,
                     own_layout: bool) -> dict[str, torch.Tensor]:
        """timm's filter for Microsoft / timm checkpoints; files in our own layout skip its key guessing,
        whose layout detection differs between timm versions. Position tables are resized to the
        model's windows either way (timm shrinks windows on small inputs)."""
        if not own_layout:
            return checkpoint_filter_fn(state, model)
        own = model.state_dict()
        state = {k: v for k, v in state.items() if not k.endswith(_BUFFERS)}
        for k, v in state.items():
            if k.endswith("relative_position_bias_table") and k in own and own[k].shape != v.shape:
                window = model.get_submodule(k[: -len(".relative_position_bias_table")]).window_size
                state[k] = resize_rel_pos_bias_table(v, new_window_size=window, new_bias_shape=own[k].shape)
        return state

    def stages(self, model: SwinTransformer) -> list[list[nn.Module]]:
        return [list(stage.blocks) for stage in model.layers]

    def run(self, model: SwinTransformer, x: torch.Tensor, tap: TapRunner = run_tap,
            recompute: bool = False) -> Iterator[Tapped]:
        x = model.patch_embed(x)
        for stage in model.layers:  # a timm stage: patch merging, then its blocks
            out = run_blocks(list(stage.blocks), stage.downsample(x), tap, recompute)
            yield out
            x = out.main

    def tap_forward(self, block: nn.Module, x: torch.Tensor,
                    mlp: Callable[[torch.Tensor], tuple[torch.Tensor, Any]]) -> Tapped:
        # timm's SwinTransformerBlock.forward, step for step
        B, H, W, C = x.shape
        x = x + block.drop_path1(block._attn(block.norm1(x)))
        x = x.reshape(B, -1, C)
        m, extra = mlp(block.norm2(x))
        return Tapped((x + block.drop_path2(m)).reshape(B, H, W, C), extra)

    tap_layouts = ("stage", "merged")

    def factorable(self, model: SwinTransformer, layout: str = "stage") -> bool:
        return layout != "merged"  # merged taps pass a LayerNorm

    def maps(self, model: SwinTransformer, tokens: torch.Tensor, image_hw: tuple[int, int],
             level: int, layout: str = "stage") -> torch.Tensor:
        if layout == "merged" and level + 1 < len(model.layers):
            lead = tokens.shape[:-3]  # every stream (task, batch) through the same frozen merging
            merged = model.layers[level + 1].downsample(tokens.reshape(-1, *tokens.shape[-3:]))
            tokens = merged.reshape(*lead, *merged.shape[1:])
        return tokens.movedim(-1, -3)  # (..., H, W, C) -> (..., C, H, W)

    def tap_channels(self, model: SwinTransformer, layout: str = "stage") -> list[int]:
        chans = [info["num_chs"] for info in model.feature_info]
        return chans[1:] + chans[-1:] if layout == "merged" else chans

    def no_weight_decay(self, model: SwinTransformer) -> set[str]:
        return set(model.no_weight_decay())  # the relative-position tables, wherever they sit

