"""What a backbone family tells the rest of the project, so that methods and decoders never walk a
particular timm class themselves.

A family (Swin, plain ViT, ...) is one file holding a subclass of ``BackboneFamily`` and its table of
variants. Everything downstream asks the family: which blocks a method may adapt (``stages``, whose
last block each is a tap), how to run the backbone to its taps (``run``, each tap's output a ``Tapped``
value), how to run a tap block with a method's MLP (``tap_forward``), how tap tokens become the NCHW maps
the decoders read (``maps``), which parameters are exempt from weight decay, and how a
foreign checkpoint is filtered into the model (timm's own filter for that family).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from ...errors import ConfigError
from ..recompute import recomputed


class Tapped(NamedTuple):
    """What a stage gives at its tap: the stream that runs on into the next stage, and what the method's tap adds
    to it as a value (VMT's task factors, MTLoRA's task streams; None for a plain block)."""

    main: torch.Tensor
    extra: Any = None


def run_tap(block: nn.Module, x: torch.Tensor) -> Tapped:
    """Run a stage's tap block: a plain block's output, or a method's tap block's own ``Tapped``."""
    out = block(x)
    return out if isinstance(out, Tapped) else Tapped(out)


TapRunner = Callable[[nn.Module, torch.Tensor], Tapped]  # how a method runs a stage's last block


class BackboneFamily:
    """Interface of a backbone family; ``variants`` maps a name to the timm constructor's arguments."""

    name: str = ""
    module_type: type[nn.Module] = nn.Module
    layout: str = ""  # safetensors metadata "layout" of files written in this family's key names
    variants: dict[str, dict] = {}

    def build(self, variant: str, img_size: int | None, drop_path: float | None = None) -> nn.Module:
        """The timm module for ``variant`` without a classifier, accepting any input size; ``drop_path``
        is the stochastic-depth rate (None: the family's default)."""
        raise NotImplementedError

    def arguments(self, variant: str, img_size: int | None, drop_path: float | None) -> dict:
        """The timm constructor's arguments for ``variant``, with the input size and drop-path rate if given."""
        kwargs = dict(self.variants[variant])
        if img_size is not None:
            kwargs["img_size"] = img_size
        if drop_path is not None:
            kwargs["drop_path_rate"] = drop_path
        return kwargs

    def filter_state(self, state: dict[str, torch.Tensor], model: nn.Module,
                     own_layout: bool) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors renamed and resized for ``model``; ``own_layout``: the file declares ``layout``."""
        raise NotImplementedError

    def stages(self, model: nn.Module) -> list[list[nn.Module]]:
        """The blocks a method may adapt, grouped so that the last block of every group is a tap."""
        raise NotImplementedError

    def run(self, model: nn.Module, x: torch.Tensor, tap: TapRunner = run_tap,
            recompute: bool = False) -> Iterator[Tapped]:
        """Run the backbone once, yielding what each stage's tap block gives (``tap`` runs it; tokens in the
        family's own layout); ``recompute``: the blocks keep no activations (``run_blocks``)."""
        raise NotImplementedError

    def tap_forward(self, block: nn.Module, x: torch.Tensor,
                    mlp: Callable[[torch.Tensor], tuple[torch.Tensor, Any]]) -> Tapped:
        """The block's own forward with its MLP call replaced by ``mlp``, which returns the MLP's output and a value
        the tap passes on: how a method whose task streams start from the MLP's input (VMT) taps the block
        without keeping anything on it."""
        raise NotImplementedError

    def maps(self, model: nn.Module, tokens: torch.Tensor, image_hw: tuple[int, int], level: int,
             layout: str = "stage") -> torch.Tensor:
        """Tap ``level``'s tokens, with any leading dims, as NCHW maps ``(..., C, H, W)`` in ``layout`` (one of
        ``tap_layouts``: the model's ``model.taps``, which the method holds)."""
        raise NotImplementedError

    tap_layouts: tuple[str, ...] = ("stage",)  # "stage": the tap blocks' outputs; others per family

    def factorable(self, model: nn.Module, layout: str = "stage") -> bool:
        """Whether ``maps`` only re-lays tokens out (no resampling, no norm), so that a tap's map of a sum is
        the sum of the maps and a low-rank offset can stay factored (``models/taps``)."""
        return False

    def tap_channels(self, model: nn.Module, layout: str = "stage") -> list[int]:
        """Channels of the four maps ``maps`` returns in ``layout``, finest first."""
        raise NotImplementedError

    def no_weight_decay(self, model: nn.Module) -> set[str]:
        """Parameter names in ``model`` that the family's recipe does not decay."""
        raise NotImplementedError


def run_blocks(blocks: list[nn.Module], x: torch.Tensor, tap: TapRunner, recompute: bool) -> Tapped:
    """Run a stage's ``blocks`` in turn, the last (the tap) through ``tap``. With ``recompute``
    (``train.grad_checkpointing``) every block, the tap included, keeps no activations and is recomputed in
    backward (with the random state it drew from, for dropout and drop-path)."""
    for block in blocks[:-1]:
        x = recomputed(recompute, block, x)
    return recomputed(recompute, tap, blocks[-1], x)


def require_family(method: str, family: BackboneFamily, allowed: tuple[str, ...], why: str) -> None:
    """A method that exists for some families only says so in one line."""
    if family.name not in allowed:
        raise ConfigError(f"method {method!r} works on {' and '.join(allowed)} backbones only ({why}); "
                          f"this backbone is a {family.name}")
