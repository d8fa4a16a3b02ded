"""Per-task bottleneck adapters (Houlsby et al., 2019), serial after the MLP (and optionally the attention).

``x + f(z)`` becomes ``x + h + A_t(h)`` with ``h = f(z)`` the frozen sub-layer's output and
``A_t = up_t(act(down_t(h)))`` (C -> k -> C, ``up_t`` zero-initialised so step 0 is the frozen
backbone). Each task has its own adapters and its own backbone pass.

Two settings matter in practice:

- the project's default: one adapter after the MLP of every block, width ``hidden`` = 64, nothing
  else trained;
- Houlsby's own, and the Adapter row of the published PASCAL-Context table (Polyhistor, NeurIPS 2022,
  Table 1; reprinted by MTLoRA): ``positions: attn,mlp`` (a second adapter after the attention
  projection), ``reduction: 4`` (width C / 4 of each block) and ``train_norms: true`` (one set of
  LayerNorms shared by the tasks). On Swin-T that is 2,167,584 adapter parameters per task, and
  4 tasks plus the reference decoders and the norms land on the published 11.24 M once the table's
  unexplained 0.60 M constant is added (``vmt params``; ``models/published.py``).

The adapter is token-wise, so applying it to the window-partitioned tokens timm's Swin attention
returns equals applying it after the windows are merged back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError
from .base import (
    ACTIVATIONS,
    NORM_PARAMS,
    MethodConfig,
    PerTaskMethod,
    TaskRouted,
    adapted_blocks,
    check_positive,
    register,
)

POSITIONS = {"attn": lambda block: block.attn.proj.out_features, "mlp": lambda block: block.mlp.fc2.out_features}


class Bottleneck(nn.Module):
    """down (d -> k), act, up (k -> d, zero-init): the adapter of one task in one block."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[act]()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(h)))


class SerialAdapter(TaskRouted):
    """A frozen sub-layer (``base_layer``: a block's ``mlp`` or ``attn``) followed by the active task's adapter."""

    def __init__(self, base_layer: nn.Module, dim: int, num_tasks: int, hidden: int, act: str) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.bottlenecks = nn.ModuleList(Bottleneck(dim, hidden, act) for _ in range(num_tasks))

    def forward(self, *args, **kwargs) -> torch.Tensor:
        h = self.base_layer(*args, **kwargs)
        return h + self.bottlenecks[self.task](h)


@dataclass
class AdapterConfig(MethodConfig):
    hidden: int = 64  # bottleneck width k of every adapter (unless reduction is set)
    act: str = "gelu"
    reduction: int = 0  # > 0: each adapter's width is C / reduction of its block (Houlsby: 4) instead of hidden
    positions: str = "mlp"  # comma-separated sub-layers followed by an adapter: attn, mlp
    train_norms: bool = False  # also train the backbone's LayerNorms (one set, shared by the tasks)

    def __post_init__(self) -> None:
        check_positive(self, "adapter", "hidden")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"model.hparams.act (adapter) {self.act!r}: choose from {', '.join(ACTIVATIONS)}")
        if self.reduction < 0:
            raise ConfigError("model.hparams.reduction (adapter) must be 0 (use hidden) or positive, "
                              f"got {self.reduction}")
        places = [p.strip() for p in self.positions.split(",") if p.strip()]
        if not places or any(p not in POSITIONS for p in places):
            raise ConfigError(f"model.hparams.positions (adapter) {self.positions!r}: a comma-separated subset of "
                              f"{', '.join(POSITIONS)}")
        self.positions = ",".join(p for p in POSITIONS if p in places)  # canonical order, no repeats


@register
class AdapterMethod(PerTaskMethod):
    name = "adapter"
    config_class = AdapterConfig

    def inject(self, backbone: nn.Module) -> None:
        cfg = self.cfg
        for block in adapted_blocks(backbone):
            for place in cfg.positions.split(","):
                dim = POSITIONS[place](block)
                hidden = max(1, dim // cfg.reduction) if cfg.reduction else cfg.hidden
                setattr(block, place, SerialAdapter(getattr(block, place), dim, len(self.task_names), hidden, cfg.act))

    def is_other_trainable(self, name: str) -> bool:
        return self.cfg.train_norms and NORM_PARAMS.search(name) is not None
