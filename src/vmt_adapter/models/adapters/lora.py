"""LoRA (Hu et al., 2022) per task on the attention's qkv projection, and the low-rank layers MTLoRA reuses.

A small module of our own rather than Hugging Face ``peft``: MTLoRA needs T low-rank updates held
as one stacked parameter, each applied to its task's own input, and a layer that returns shared and
task outputs together, which ``peft``'s ``LoraLayer`` does not offer; one ``LowRank`` here serves both.

``LowRank`` holds n stacked updates ``delta_i(x) = scale * B_i A_i x``: A like ``nn.Linear``'s
default init, B zero, so a wrapped layer starts exactly equal to the frozen one. For ``lora``,
n = T and the active task picks its entry (each task its own backbone pass); rank 8 and
alpha = rank (scale 1) by default, one update of the fused qkv projection (``targets: qkv``).
``targets: q,v`` gives q and v their own updates instead (Hu et al.'s setting): at rank 4 that is
the setting the PASCAL configs take for the LoRA row of the published table (Polyhistor, NeurIPS
2022, Table 1: 2.87 M), whose configuration nobody has recovered (MTLoRA issue 8); it counts
2.23 M with the reference decoders, 2.83 M with the table's unexplained 0.60 M constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
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
        return F.linear(F.linear(x, self.A[i]), self.B[i]).mul_(self.scale)  # in place: see ``entry``

    def entry(self, x: torch.Tensor, i: int, plus: torch.Tensor | None = None) -> torch.Tensor:
        """Entry ``i`` applied to ``x`` (..., d_in), with ``plus`` added. A batch of one through ``bmm`` rather than
        ``F.linear``: its products and their gradients are bit for bit those of entry ``i`` of all entries in one
        ``bmm``, the form MTLoRA's documented runs were trained with. Scale and ``plus`` go in place into the
        product's fresh output, which its backward does not read: on a CPU every large new tensor costs its pages'
        first-touch faults."""
        flat = x.reshape(1, -1, x.shape[-1])
        A, B = self.A[i:i + 1].transpose(1, 2), self.B[i:i + 1].transpose(1, 2)
        out = torch.bmm(torch.bmm(flat, A), B).mul_(self.scale)
        if plus is not None:  # in place before any view: autograd would otherwise rebuild the base in backward
            out.add_(plus.reshape(-1, plus.shape[-1]))
        return out.view(*x.shape[:-1], -1)


QKV = ("q", "k", "v")


class LoRALinear(TaskRouted):
    """A frozen ``nn.Linear`` (``base_layer``) plus the low-rank update of entry ``task`` of ``lora``."""

    def __init__(self, base_layer: nn.Linear, n: int, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora = LowRank(n, base_layer.in_features, base_layer.out_features, rank, scale)
        self.dropout = lora_dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora(self.dropout(x), self.task).add_(self.base_layer(x))


def lora_dropout(p: float) -> nn.Module:
    """Dropout on the update's input only (the frozen layer reads ``x`` whole), active in train mode:
    the public LoRA / MTLoRA code's ``lora_dropout``; none at 0."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class SplitLoRALinear(TaskRouted):
    """A frozen fused qkv projection (``base_layer``, C -> 3C) with low-rank updates of some of q, k, v only."""

    def __init__(self, base_layer: nn.Linear, targets: list[str], n: int, rank: int, scale: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        part = base_layer.out_features // len(QKV)
        self.lora = nn.ModuleDict({t: LowRank(n, base_layer.in_features, part, rank, scale) for t in targets})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.base_layer(x).chunk(len(QKV), dim=-1))
        for name, update in self.lora.items():
            i = QKV.index(name)
            parts[i] = update(x, self.task).add_(parts[i])
        return torch.cat(parts, dim=-1)


@dataclass
class LoRAConfig(MethodConfig):
    rank: int = 8
    alpha: float | None = None  # the update is scaled by alpha / rank; None: alpha = rank (scale 1)
    targets: str = "qkv"  # qkv: one update of the fused projection; else a comma-separated subset of q, k, v

    def __post_init__(self) -> None:
        check_positive(self, "lora", "rank")
        self.alpha = float(self.rank if self.alpha is None else self.alpha)
        if self.targets != "qkv":
            names = [t.strip() for t in self.targets.split(",") if t.strip()]
            if not names or any(t not in QKV for t in names):
                raise ConfigError(f"model.hparams.targets (lora) {self.targets!r}: 'qkv' or a comma-separated "
                                  "subset of q, k, v")
            self.targets = ",".join(t for t in QKV if t in names)


@register
class LoRAMethod(PerTaskMethod):
    name = "lora"
    config_class = LoRAConfig

    def inject(self, backbone: nn.Module) -> None:
        cfg, n = self.cfg, len(self.task_names)
        for block in adapted_blocks(backbone):
            qkv = block.attn.qkv
            block.attn.qkv = (LoRALinear(qkv, n, cfg.rank, cfg.alpha / cfg.rank) if cfg.targets == "qkv" else
                              SplitLoRALinear(qkv, cfg.targets.split(","), n, cfg.rank, cfg.alpha / cfg.rank))

