"""Parameter-efficient methods: how each one changes the frozen backbone and runs it for T tasks.

A method is a config plus an ``inject`` step (modules are swapped into the built, loaded
backbone, peft style) and a ``taps`` step that returns the four stage maps for every task.
``METHODS`` is the registry that ``--method`` names (each module registers its own methods); a
method's hyper-parameters are its ``MethodConfig`` dataclass; what each method trains is stated once,
in its ``is_adapter``, ``is_other_trainable`` and ``trains_backbone`` members (see ``base``).

One backbone pass serves all tasks: ``decoder-only``, ``mt-full``, ``vmt``, ``vmt-lite``, ``mtlora``.
One pass per task: ``st-full``, ``bitfit``, ``adapter``, ``lora``, ``vpt-deep``.
"""

from __future__ import annotations

from ...errors import ConfigError

# isort: off
from . import vmt, full, bitfit, houlsby, lora, vpt, mtlora  # noqa: F401  (each registers its methods, in this order)
# isort: on
from .base import METHODS, Method, MethodConfig, PerTaskMethod, TaskRouted, read_config, run_stages


def build_method(name: str, task_names: list[str], cfg: MethodConfig | None = None, **hparams) -> Method:
    """Instantiate ``name`` with its config object ``cfg``, or one read from ``hparams``; an unknown method or
    field is an error."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    cls = METHODS[name]
    if cfg is not None and not isinstance(cfg, cls.config_class):
        raise ConfigError(f"method {name!r} takes a {cls.config_class.__name__}, got a {type(cfg).__name__}")
    return cls(task_names, cfg if cfg is not None else read_config(cls.config_class, hparams, name))


__all__ = ["METHODS", "Method", "MethodConfig", "PerTaskMethod", "TaskRouted", "build_method", "run_stages"]
