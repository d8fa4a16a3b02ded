"""LoRA (Hu et al., 2022) per task on the attention's qkv projection, and the low-rank layers MTLoRA reuses.

A small module of our own rather than Hugging Face ``peft``: MTLoRA needs low-rank updates that
map a stack of T task inputs in one batched product and a layer that returns shared and task
outputs together, which ``peft``'s ``LoraLayer`` does not offer; one ``LowRank`` here serves both.

``LowRank`` holds n stacked updates ``delta_i(x) = scale * B_i A_i x``: A like ``nn.Linear``'s
default init, B zero, so a wrapped layer starts exactly equal to the frozen one. For ``lora``,
n = T and the active task picks its entry (each task its own backbone pass); rank 8 and
alpha = rank (scale 1) by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import MethodConfig, PerTaskMethod, TaskRouted, adapted_blocks, check_positive, register


class LowRank(nn.Module):
    """n stacked rank-r updates of a d_in -> d_out linear map: A (n, r, d_in), B (n, d_out, r) zero-init."""

    def __init__(self, n: int, d_in: int, d_out: int, rank: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.A = nn.Parameter(torch.empty(n, rank, d_in))
        self.B = nn.Parameter(torch.zeros(n, d_out, rank))
        for a in self.A:  # each entry as nn.Linear(d_in, r) initialises its weight
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Entry ``i`` applied to ``x`` (..., d_in)."""
        return self.scale * F.linear(F.linear(x, self.A[i]), self.B[i])

    def stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Entry i applied to ``x[i]`` for all i in one batched product: (n, ..., d_in) -> (n, ..., d_out)."""
        flat = x.flatten(1, -2)  # n, M, d_in
        out = torch.bmm(torch.bmm(flat, self.A.transpose(1, 2)), self.B.transpose(1, 2))  # n, M, d_out
        return self.scale * out.view(*x.shape[:-1], -1)


class LoRALinear(TaskRouted):
    """A frozen ``nn.Linear`` (``base_layer``) plus the low-rank update of entry ``task`` of ``lora``."""

    def __init__(self, base_layer: nn.Linear, n: int, rank: int, scale: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora = LowRank(n, base_layer.in_features, base_layer.out_features, rank, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora(x, self.task)


@dataclass
class LoRAConfig(MethodConfig):
    rank: int = 8
    alpha: float | None = None  # the update is scaled by alpha / rank; None: alpha = rank (scale 1)

    def __post_init__(self) -> None:
        check_positive(self, "lora", "rank")
        self.alpha = float(self.rank if self.alpha is None else self.alpha)


@register
class LoRAMethod(PerTaskMethod):
    name = "lora"
    config_class = LoRAConfig

    def inject(self, backbone: nn.Module) -> None:
        for block, _ in adapted_blocks(backbone):
            block.attn.qkv = LoRALinear(block.attn.qkv, len(self.task_names), self.cfg.rank,
                                        self.cfg.alpha / self.cfg.rank)

    def is_adapter(self, name: str) -> bool:
        return ".attn.qkv.lora." in name
