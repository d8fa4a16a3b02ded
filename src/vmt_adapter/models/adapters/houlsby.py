"""Per-task bottleneck adapters (Houlsby et al., 2019), serial after the MLP of every block.

``x + mlp(z)`` becomes ``x + h + A_t(h)`` with ``h = mlp(z)`` and ``A_t = up_t(act(down_t(h)))``
(d -> k -> d, ``up_t`` zero-initialised so step 0 is the frozen backbone). Houlsby et al. also put
one after attention and train the LayerNorms; this baseline keeps the single adapter after the
MLP (as the issue specifies) and trains nothing else. Each task has its own adapters and its own
backbone pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError
from .base import MethodConfig, PerTaskMethod, TaskRouted, adapted_blocks, check_positive, register
from .vmt import ACTIVATIONS


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


class SerialAdapterMLP(TaskRouted):
    """A frozen ``block.mlp`` (``base_layer``) followed by the active task's bottleneck adapter."""

    def __init__(self, base_layer: nn.Module, num_tasks: int, hidden: int, act: str) -> None:
        super().__init__()
        self.base_layer = base_layer
        dim = base_layer.fc2.out_features
        self.bottlenecks = nn.ModuleList(Bottleneck(dim, hidden, act) for _ in range(num_tasks))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(z)
        return h + self.bottlenecks[self.task](h)


@dataclass
class AdapterConfig(MethodConfig):
    hidden: int = 64  # bottleneck width k of every adapter
    act: str = "gelu"

    def __post_init__(self) -> None:
        check_positive(self, "adapter", "hidden")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"model.hparams.act (adapter) {self.act!r}: choose from {', '.join(ACTIVATIONS)}")


@register
class AdapterMethod(PerTaskMethod):
    name = "adapter"
    config_class = AdapterConfig

    def inject(self, backbone: nn.Module) -> None:
        for block, _ in adapted_blocks(backbone):
            block.mlp = SerialAdapterMLP(block.mlp, len(self.task_names), self.cfg.hidden, self.cfg.act)

    def is_adapter(self, name: str) -> bool:
        return ".mlp.bottlenecks." in name
