"""Parameter-efficient methods: how each one changes the frozen backbone and runs it for T tasks.

A method is a config plus an ``inject`` step (modules are swapped into the built, loaded
backbone, peft style) and a ``taps`` step that returns the four stage maps for every task.
``METHODS`` is the registry that ``--method`` names; what each method trains is stated once,
in its ``is_adapter``, ``is_other_trainable`` and ``trains_backbone`` members (see ``base``).

One backbone pass serves all tasks: ``decoder-only``, ``mt-full``, ``vmt``, ``vmt-lite``, ``mtlora``.
One pass per task: ``st-full``, ``bitfit``, ``adapter``, ``lora``, ``vpt-deep``.
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import Method, PerTaskMethod, TaskRouted, run_stages
from .bitfit import BitFitMethod
from .full import MTFullMethod, STFullMethod
from .houlsby import AdapterMethod
from .lora import LoRAMethod
from .mtlora import MTLoRAMethod
from .vmt import VMTLiteMethod, VMTMethod
from .vpt import VPTDeepMethod


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
