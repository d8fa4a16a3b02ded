r"""VPT-deep (Jia et al., ECCV 2022) per task, on Swin's window attention.

Swin attends inside windows, so prompts cannot simply be prepended to the token sequence. The
public VPT code for Swin (KMnP/vpt, ``src/models/vit_prompt/swin_transformer.py``) prepends the
block's prompt tokens to *every* window, with zero relative-position bias and no shift mask, and
at the next block replaces them by that block's own prompts. The prompts' outputs are therefore
discarded at every block: their only effect on the image tokens is as extra keys and values of each
window attention. That is what this module implements, per task and per block::

    k_p, v_p = qkv(P_t)                                 # P_t: p prompt tokens of task t, frozen qkv
    s_x = q k^T * scale + rel_pos_bias (+ shift mask)   # the frozen window attention's logits
    s_p = q k_p^T * scale                               # logits on the prompts
    lam = sum exp(s_p) / (sum exp(s_p) + sum exp(s_x))  # attention mass the prompts take
    o   = o_x + g_t * lam * (o_p - o_x)                 # o_x, o_p: softmax(s_x) v, softmax(s_p) v_p

With ``g_t = 1`` ``o`` is exactly the softmax over [prompts; window] that VPT computes. Two
choices of ours: ``g_t`` is a per-task, per-head gate initialised at 0, so that step 0 is the
frozen backbone as for every PEFT method here (VPT itself starts perturbed); and the prompts
are learned in the space the attention reads (after the block's frozen ``norm1``): VPT's
``norm1(P)`` is a reparametrisation of that space, so the same keys and values are reachable.
Each task runs its own backbone pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.swin_transformer import WindowAttention
from torch import nn

from ..backbones import family_of, require_family
from .base import MethodConfig, PerTaskMethod, TaskRouted, adapted_blocks, check_positive, register


class PromptedWindowAttention(TaskRouted):
    """A frozen timm ``WindowAttention`` (``base_layer``) whose windows also attend to the active task's prompts."""

    def __init__(self, base_layer: WindowAttention, num_tasks: int, tokens: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        # Unit-scale tokens, like the LayerNorm outputs the attention reads; the zero gate makes init harmless.
        self.prompts = nn.Parameter(torch.randn(num_tasks, tokens, base_layer.qkv.in_features))
        self.gate = nn.Parameter(torch.zeros(num_tasks, base_layer.num_heads))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B * windows, N, C) as timm's block passes it; ``mask``: (windows, N, N) or None."""
        attn = self.base_layer
        B_, N, _ = x.shape
        h = attn.num_heads
        q, k, v = attn.qkv(x).reshape(B_, N, 3, h, -1).permute(2, 0, 3, 1, 4).unbind(0)  # B_, h, N, hd
        _, kp, vp = attn.qkv(self.prompts[self.task]).reshape(-1, 3, h, q.shape[-1]).permute(1, 2, 0, 3)  # h, p, hd
        q = q * attn.scale
        s_x = q @ k.transpose(-2, -1) + attn._get_rel_pos_bias()  # B_, h, N, N
        if mask is not None:
            num_win = mask.shape[0]
            s_x = (s_x.view(-1, num_win, h, N, N) + mask.unsqueeze(1).unsqueeze(0)).view(-1, h, N, N)
        s_p = q @ kp.transpose(-2, -1)  # B_, h, N, p: no position bias, never masked (as VPT)
        lam = torch.sigmoid(s_p.logsumexp(-1, keepdim=True) - s_x.logsumexp(-1, keepdim=True))
        o_x = s_x.softmax(-1) @ v
        o_p = s_p.softmax(-1) @ vp
        o = o_x + self.gate[self.task].view(1, h, 1, 1) * lam * (o_p - o_x)  # B_, h, N, hd
        return attn.proj_drop(attn.proj(o.transpose(1, 2).reshape(B_, N, -1)))


@dataclass
class VPTConfig(MethodConfig):
    tokens: int = 10  # prompt tokens per block and task

    def __post_init__(self) -> None:
        check_positive(self, "vpt-deep", "tokens")


@register
class VPTDeepMethod(PerTaskMethod):
    name = "vpt-deep"
    config_class = VPTConfig

    def inject(self, backbone: nn.Module) -> None:
        require_family(self.name, family_of(backbone), ("swin",), "its prompts enter Swin's window attention")
        for block in adapted_blocks(backbone):
            block.attn = PromptedWindowAttention(block.attn, len(self.task_names), self.cfg.tokens)

