"""BitFit (Ben Zaken et al., 2022), per task: each task trains its own copy of every bias term.

Biases are those of the linear layers (qkv, proj, fc1, fc2), the LayerNorms (patch embedding,
blocks, patch merging) and the patch-embedding convolution. Each biased layer is wrapped by
``TaskBias``: the frozen layer plus a per-task offset, so task t's bias is ``b + delta_t``. Storing
offsets rather than copies makes step 0 bit-identical to the frozen backbone and trains the same
T x (all biases) parameters; weight decay, if any, pulls towards the pretrained bias rather than
towards 0. The backbone runs once per task.

``rel_pos: true`` also gives each task an offset of Swin's relative-position tables (an additive
bias of the attention logits), through ``torch.nn.utils.parametrize`` so that timm's attention reads
``table + delta_t`` unchanged. That is the BitFit row of the published PASCAL-Context table
(Polyhistor, NeurIPS 2022, Table 1): 74,778 parameters per task on Swin-T, which with the
reference decoders and the table's unexplained 0.60 M constant is the published 2.85 M. A backbone
without such tables (ViT) has nothing more to train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import ConfigError
from .base import MethodConfig, PerTaskMethod, TaskRouted, register, replace_module

BIASED = (nn.Linear, nn.LayerNorm, nn.Conv2d)
REL_POS = "relative_position_bias_table"


class TaskBias(TaskRouted):
    """A frozen layer (``base_layer``) whose bias is shifted by the active task's offset (1-D, zero-init)."""

    def __init__(self, base_layer: nn.Module, num_tasks: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.deltas = nn.ParameterList(nn.Parameter(torch.zeros_like(base_layer.bias)) for _ in range(num_tasks))
        self.conv = isinstance(base_layer, nn.Conv2d)  # NCHW: the bias sits on dim 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.deltas[self.task]
        return self.base_layer(x) + (delta[:, None, None] if self.conv else delta)


class TaskOffset(TaskRouted):
    """A parametrization: the frozen tensor plus the active task's offset (zero-init)."""

    def __init__(self, like: torch.Tensor, num_tasks: int) -> None:
        super().__init__()
        self.deltas = nn.ParameterList(nn.Parameter(torch.zeros_like(like)) for _ in range(num_tasks))

    def forward(self, frozen: torch.Tensor) -> torch.Tensor:
        return frozen + self.deltas[self.task]


@dataclass
class BitFitConfig(MethodConfig):
    rel_pos: bool = False  # also a per-task offset of every relative-position table (Swin)


@register
class BitFitMethod(PerTaskMethod):
    name = "bitfit"
    config_class = BitFitConfig

    def inject(self, backbone: nn.Module) -> None:
        n = len(self.task_names)
        biased = [name for name, m in backbone.named_modules() if isinstance(m, BIASED) and m.bias is not None]
        for name in biased:
            replace_module(backbone, name, TaskBias(backbone.get_submodule(name), n))
        if self.cfg.rel_pos:
            tables = [m for m in backbone.modules() if isinstance(getattr(m, REL_POS, None), nn.Parameter)]
            if not tables:  # a ViT has no relative-position table: the option would do nothing, silently
                raise ConfigError("method 'bitfit': rel_pos: true needs relative-position tables (Swin); "
                                  "this backbone has none")
            for module in tables:
                parametrize.register_parametrization(module, REL_POS, TaskOffset(getattr(module, REL_POS), n))

