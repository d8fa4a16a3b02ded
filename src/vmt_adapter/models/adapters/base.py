"""What every method shares: the stage runner, the ``Method`` base and the per-task machinery.

A method states its trainable set in one place: ``is_adapter`` (its PEFT parameters),
``is_other_trainable`` (backbone parameters it also trains: all of them for full fine-tuning,
LayerNorms and the like for MTLoRA) and ``trains_backbone`` (the backbone runs in train mode,
drop-path included; otherwise it is kept in eval mode). ``one_pass`` says whether one backbone
pass serves all T tasks or the backbone runs once per task.

A method's hyper-parameters are a ``MethodConfig`` dataclass (``config_class``): its fields, defaults
and checks (``__post_init__``) are the method's whole contract; ``model.hparams`` is read into it
with every key and type checked, and ``adapter.json`` stores it verbatim. A method registers
itself with ``@register`` in its own module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...typed import build
from ..backbones import family_of
from ..backbones.base import Tapped, TapRunner, run_tap

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "identity": nn.Identity}  # the adapters' non-linearities
MAX_HPARAM = 65536  # widths, ranks and token counts above this cannot fit any backbone here
# The backbone's LayerNorms (patch embedding, blocks, patch merging; timm names), not the unused final norm.
NORM_PARAMS = re.compile(r"\.norm\d?\.")


@dataclass
class MethodConfig:
    """A method without hyper-parameters; subclasses add fields and check them in ``__post_init__``."""

    # Keys older files may carry: key -> (the only value they meant, what to do instead of another value).
    RETIRED: ClassVar[dict[str, tuple[Any, str]]] = {}

    def to_dict(self) -> dict:
        return asdict(self)


def read_config(cls: type[MethodConfig], values: dict, method: str) -> MethodConfig:
    """``values`` (``model.hparams`` or an adapter file's ``hparams``) as ``cls``: fields left out take their
    defaults (a field added later does not invalidate older files); an unknown one is an error naming it."""
    huge = [k for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool) and v > MAX_HPARAM]
    if huge:  # refused before anything is allocated (a crafted adapter.json could ask for terabytes)
        raise ConfigError(f"method {method!r}: {huge[0]}={values[huge[0]]} is above {MAX_HPARAM}, the largest size "
                          "a method keyword may take")
    for key, (value, instead) in cls.RETIRED.items():
        if key in values:
            if values[key] != value:
                raise ConfigError(f"model.hparams.{key} ({method}) is retired: {instead}")
            values = {k: v for k, v in values.items() if k != key}
    if not fields(cls) and values:
        raise ConfigError(f"method {method!r} takes no hyper-parameters (model.hparams has {', '.join(values)})")
    return build(cls, values, prefix="model.hparams.")


def check_positive(cfg: MethodConfig, method: str, *names: str) -> None:
    """Each field ``names`` of a method config must be a positive integer."""
    for name in names:
        value = getattr(cfg, name)
        if value < 1:
            raise ConfigError(f"model.hparams.{name} ({method}) must be a positive integer, got {value}")


def adapted_blocks(backbone: nn.Module) -> Iterator[nn.Module]:
    """Every block a method may adapt (the family's stages, in order)."""
    for stage in family_of(backbone).stages(backbone):
        yield from stage


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available as ``model.method: <cls.name>``."""
    METHODS[cls.name] = cls
    return cls


def run_stages(backbone: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Run the backbone once, yielding the stream that runs on after each tap block (the family's layout)."""
    return (out.main for out in family_of(backbone).run(backbone, x))


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Swap the submodule ``name`` of ``root`` for ``new`` (peft style: the model source is never edited)."""
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


@register
class Method:
    """Base: a frozen backbone whose stage outputs serve every task (the decoder-only baseline)."""

    name = "decoder-only"
    config_class: type[MethodConfig] = MethodConfig
    trains_backbone = False  # full fine-tuning: every backbone parameter trains, in train mode
    one_pass = True  # False: the backbone runs once per task (T passes)
    can_fold_taps = False  # whether ``taps`` can return factored maps (``models/taps``): VMT's
    fold_taps = False  # set by the model where the method can, the layout lets it and the decoders take them

    def __init__(self, task_names: list[str], cfg: MethodConfig | None = None) -> None:
        self.task_names = list(task_names)
        self.cfg = self.config_class() if cfg is None else cfg
        self.roles: dict[str, str] = {}  # adapter tensor name -> role, read from the backbone by ``bind``
        self.layout = "stage"  # what the taps are (``model.taps``; the family's ``tap_layouts``)
        self.recompute = False  # recompute the blocks in backward (``MultiTaskModel.set_grad_checkpointing``)
        # Whole backbones the method runs besides the given one (st-full's per-task copies), made by ``inject``;
        # the model registers them beside its backbone as ``task_backbones``.
        self.task_backbones: nn.ModuleList | None = None

    def bind(self, backbone: nn.Module, layout: str = "stage") -> None:
        """Read the adapter's tensors and their roles from the layers ``inject`` (or ``add_tasks``) put in, and
        take the tap layout the model asks for."""
        self.roles, self.layout = adapter_roles(backbone), layout

    @property
    def has_unused_parameters(self) -> bool:
        """Whether some trainable parameter never receives a gradient (DDP must then be told): an adapter
        layer declared part of itself ``unused``."""
        return "unused" in self.roles.values()

    def is_unused(self, name: str) -> bool:
        """Whether the trainable backbone parameter ``name`` is built (and counted) but nothing reads its
        output: the optimizer leaves it out, as an optimizer skips a parameter without a gradient."""
        return self.roles.get(name) == "unused"

    def hparams(self) -> dict:
        """The method's config as ``adapter.json`` records it."""
        return self.cfg.to_dict()

    def inject(self, backbone: nn.Module) -> None:
        """Swap adapter modules into ``backbone``; the base method adds nothing."""

    def is_adapter(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` belongs to this method's adapter (PEFT parameters)."""
        return name in self.roles

    def is_task_specific(self, name: str) -> bool:
        """Whether the adapter parameter ``name`` belongs to one task only."""
        return self.roles.get(name) == "task"

    def add_tasks(self, backbone: nn.Module, count: int) -> None:
        """Give ``count`` more tasks their parameters, leaving every existing task's outputs unchanged;
        decoder-only has none to give (a frozen backbone and one new decoder per task)."""

    def no_weight_decay(self, name: str) -> bool:
        """Whether the trainable parameter ``name`` is exempt from weight decay (beyond 1-D parameters)."""
        return False

    def is_other_trainable(self, name: str) -> bool:
        """Whether the backbone parameter ``name``, outside the adapter, trains too."""
        return self.trains_backbone

    def is_trainable(self, name: str) -> bool:
        """The method's whole trainable set in the backbone; everything else is frozen."""
        return self.is_adapter(name) or self.is_other_trainable(name)

    def tap_channels(self, backbone: nn.Module) -> list[int]:
        """Channels of the four maps ``taps`` returns (the family's tap widths)."""
        return family_of(backbone).tap_channels(backbone, self.layout)

    def run(self, backbone: nn.Module, x: torch.Tensor, tap: TapRunner = run_tap) -> Iterator[Tapped]:
        """One backbone pass as the model set it up (``recompute``), yielding what each tap gives."""
        return family_of(backbone).run(backbone, x, tap, self.recompute)

    def maps(self, backbone: nn.Module, tokens: torch.Tensor, x: torch.Tensor, level: int) -> torch.Tensor:
        """Tap ``level``'s tokens (any leading dims) as NCHW maps in the model's tap layout."""
        return family_of(backbone).maps(backbone, tokens, x.shape[-2:], level, self.layout)

    def stage_maps(self, backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """The four NCHW maps of one backbone pass (B, C, H, W), finest first."""
        return [self.maps(backbone, out.main, x, i) for i, out in enumerate(self.run(backbone, x))]

    def taps(self, backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """Four maps, each (T or 1, B, C, H, W); a leading 1 means one map shared by every task."""
        return [m.unsqueeze(0) for m in self.stage_maps(backbone, x)]


class AdapterLayer(nn.Module):
    """Base of every module a method swaps into the backbone (peft's tuner layers): its parameters and buffers,
    except those of the frozen layer it wraps (``base_layer``), are the method's adapter. ``TASK_SPECIFIC`` names
    the attributes holding one task's parameters; ``unused`` those built (and counted) that nothing reads."""

    TASK_SPECIFIC: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.unused: tuple[str, ...] = ()


def adapter_roles(backbone: nn.Module) -> dict[str, str]:
    """Each adapter tensor's name in ``backbone`` -> "task" (one task's), "unused" or "shared", found by walking
    the modules for ``AdapterLayer`` instances rather than by name patterns."""
    roles: dict[str, str] = {}
    for prefix, layer in backbone.named_modules():
        if not isinstance(layer, AdapterLayer):
            continue
        for name, _ in [*layer.named_parameters(), *layer.named_buffers()]:
            head = name.split(".")[0]
            if head == "base_layer":
                continue
            role = "task" if head in layer.TASK_SPECIFIC else "unused" if head in layer.unused else "shared"
            roles[f"{prefix}.{name}" if prefix else name] = role
    return roles


class TaskRouted(AdapterLayer):
    """An adapter layer holding one set of parameters per task; ``task`` picks the set the next forward uses."""

    def __init__(self) -> None:
        super().__init__()
        self.task = 0


class PerTaskMethod(Method):
    """Base of the per-task methods: the backbone runs once per task, with that task's parameters.

    That T-fold cost is part of what the comparison with one-pass methods measures. The stage
    maps of the T passes are stacked, so taps are (T, B, C, H, W) like VMT's.
    """

    one_pass = False

    def add_tasks(self, backbone: nn.Module, count: int) -> None:
        raise ConfigError(f"method {self.name!r} cannot add a task to a trained run: its tasks share nothing, so "
                          "train the new task as a run of its own")

    def is_task_specific(self, name: str) -> bool:
        return self.is_adapter(name)

    def task_backbone(self, backbone: nn.Module, task: int) -> nn.Module:
        """The backbone set up for ``task``: every ``TaskRouted`` module switched to it."""
        for module in backbone.modules():
            if isinstance(module, TaskRouted):
                module.task = task
        return backbone

    def taps(self, backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        passes = [self.stage_maps(self.task_backbone(backbone, t), x) for t in range(len(self.task_names))]
        return [torch.stack(maps) for maps in zip(*passes)]
