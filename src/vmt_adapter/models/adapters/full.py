"""Full fine-tuning baselines: every backbone parameter trains, in train mode (drop-path active).

- ``st-full``: single-task full fine-tuning, the reference of the multi-task score: one independent
  backbone per task, T backbone passes. Task 0 runs the backbone itself; tasks 1..T-1 run deep copies
  of it (``task_backbones``), which the model registers beside the backbone so that they train, are
  counted and saved with it.
- ``mt-full``: multi-task full fine-tuning: one shared backbone, all decoders on its one pass.
"""

from __future__ import annotations

import copy

from torch import nn

from ...errors import ConfigError
from .base import Method, PerTaskMethod, register


@register
class MTFullMethod(Method):
    name = "mt-full"
    trains_backbone = True

    def add_tasks(self, backbone: nn.Module, count: int) -> None:
        raise ConfigError("method 'mt-full' cannot add a task to a trained run: its tasks share the backbone it "
                          "trains, so a new task would change what the old ones read (forgetting)")


@register
class STFullMethod(PerTaskMethod):
    name = "st-full"
    trains_backbone = True

    def inject(self, backbone: nn.Module) -> None:
        self.task_backbones = nn.ModuleList(copy.deepcopy(backbone) for _ in self.task_names[1:])

    def task_backbone(self, backbone: nn.Module, task: int) -> nn.Module:
        return self.task_backbones[task - 1] if task else backbone
