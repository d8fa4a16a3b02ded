"""BitFit (Ben Zaken et al., 2022), per task: each task trains its own copy of every bias term.

Biases are those of the linear layers (qkv, proj, fc1, fc2), the LayerNorms (patch embedding,
blocks, patch merging) and the patch-embedding convolution; the relative-position tables are not
bias terms and stay frozen. Each biased layer is wrapped by ``TaskBias``: the frozen layer plus a
per-task offset, so task t's bias is ``b + delta_t``. Storing offsets rather than copies makes step 0
bit-identical to the frozen backbone and trains the same T x (all biases) parameters; weight decay, if
any, pulls towards the pretrained bias rather than towards 0. The backbone runs once per task.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import PerTaskMethod, TaskRouted, register, replace_module

BIASED = (nn.Linear, nn.LayerNorm, nn.Conv2d)


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


@register
class BitFitMethod(PerTaskMethod):
    name = "bitfit"

    def inject(self, backbone: nn.Module) -> None:
        biased = [n for n, m in backbone.named_modules() if isinstance(m, BIASED) and m.bias is not None]
        for name in biased:
            replace_module(backbone, name, TaskBias(backbone.get_submodule(name), len(self.task_names)))

    def is_adapter(self, name: str) -> bool:
        return ".deltas." in name
