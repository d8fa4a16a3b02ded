"""Parameter-efficient methods: how each one changes the frozen backbone and runs it for T tasks.

A method is a config plus an ``inject`` step (modules are swapped into the built, loaded
backbone, peft style) and a ``taps`` step that returns the four stage maps for every task.
``METHODS`` is the registry that ``--method`` names; what each method trains is stated once,
in its ``is_adapter``, ``is_other_trainable`` and ``trains_backbone`` members (see ``base``).

One backbone pass serves all tasks: ``decoder-only``, ``mt-full``, ``vmt``, ``vmt-lite``, ``mtlora``.
One pass per task: ``st-full``, ``bitfit``, ``adapter``, ``lora``, ``vpt-deep``.
"""

from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformer

from ...errors import ConfigError
from .base import Method, PerTaskMethod, TaskRouted, run_stages
from .bitfit import BitFitMethod
from .full import MTFullMethod, STFullMethod
from .houlsby import AdapterMethod
from .lora import LoRAMethod
from .mtlora import MTLoRAMethod
from .vmt import ParallelMLP, VMTAdapter, VMTAdapterConfig
from .vpt import VPTDeepMethod


class VMTMethod(Method):
    """VMT-Adapter: one backbone pass, task streams only at the last block of each stage."""

    name = "vmt"

    def __init__(self, task_names: list[str], bottleneck: int = 128, scale: float = 1.0, act: str = "relu",
                 lite: bool = False) -> None:
        super().__init__(task_names)
        self.cfg = VMTAdapterConfig(bottleneck=bottleneck, scale=scale, act=act, lite=lite)

    def hparams(self) -> dict:
        return self.cfg.to_dict()

    def inject(self, backbone: SwinTransformer) -> None:
        for stage in backbone.layers:
            for i, block in enumerate(stage.blocks):
                adapter = VMTAdapter(block.mlp.fc1.in_features, len(self.task_names), self.cfg)
                block.mlp = ParallelMLP(block.mlp, adapter, is_tap=i == len(stage.blocks) - 1)

    def is_adapter(self, name: str) -> bool:
        return ".mlp.adapter." in name

    def is_task_specific(self, name: str) -> bool:
        return self.is_adapter(name) and name.endswith((".gamma", ".beta"))

    def taps(self, backbone: SwinTransformer, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage, main in zip(backbone.layers, run_stages(backbone, x)):
            tap = stage.blocks[-1].mlp
            offsets, tap.task_offsets = tap.task_offsets, None  # T, B, N, C; don't keep the graph alive
            streams = main.unsqueeze(0) + offsets.view(offsets.shape[0], *main.shape)  # T, B, H, W, C
            out.append(streams.permute(0, 1, 4, 2, 3))
        return out


class VMTLiteMethod(VMTMethod):
    """VMT-Adapter-Lite: the up-projection is the transposed down-projection (one tied matrix)."""

    name = "vmt-lite"

    def __init__(self, task_names: list[str], bottleneck: int = 128, scale: float = 1.0, act: str = "relu") -> None:
        super().__init__(task_names, bottleneck=bottleneck, scale=scale, act=act, lite=True)

    def hparams(self) -> dict:
        return {k: v for k, v in self.cfg.to_dict().items() if k != "lite"}  # implied by the method, not a keyword


METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (VMTMethod, VMTLiteMethod, Method, STFullMethod, MTFullMethod, BitFitMethod, AdapterMethod, LoRAMethod,
              VPTDeepMethod, MTLoRAMethod)
}


MAX_SIZE = 65536  # widths, ranks and token counts above this cannot fit any backbone here


def build_method(name: str, task_names: list[str], **hparams) -> Method:
    """Instantiate ``name`` with the hyper-parameters it accepts; an unknown one is an error."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    huge = [k for k, v in hparams.items() if isinstance(v, int) and not isinstance(v, bool) and v > MAX_SIZE]
    if huge:  # refused before anything is allocated (a crafted adapter.json could ask for terabytes)
        raise ConfigError(f"method {name!r}: {huge[0]}={hparams[huge[0]]} is above {MAX_SIZE}, the largest size "
                          "a method keyword may take")
    try:
        return METHODS[name](task_names, **hparams)
    except TypeError as exc:
        raise ConfigError(f"method {name!r}: {exc}") from exc


__all__ = ["METHODS", "Method", "PerTaskMethod", "TaskRouted", "build_method", "run_stages"]
