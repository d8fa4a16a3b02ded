"""Backbones by name (timm style): each family file holds a table of variants; one builder makes them all.

Adding a family is one file (a ``BackboneFamily`` subclass with its variants) plus one row in
``FAMILIES``. A built backbone is the plain timm module, so foreign checkpoints load through timm's
own filter for that family and parameter names stay timm's.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ...errors import WeightsError
from .base import BackboneFamily, require_family
from .swin import SwinFamily
from .vit import ViTFamily
from .weights import (
    describe_load_error,
    load_weights,
    read_state_dict,
    resolve_weights,
    state_digest,
    weights_identity,
    weights_layout,
    write_weights,
)

FAMILIES: tuple[BackboneFamily, ...] = (SwinFamily(), ViTFamily())
BACKBONES: dict[str, BackboneFamily] = {name: fam for fam in FAMILIES for name in fam.variants}


def _check_name(name: str) -> BackboneFamily:
    if name not in BACKBONES:
        raise WeightsError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name]


def family_of(backbone: nn.Module) -> BackboneFamily:
    """The family of a built backbone (its timm class)."""
    for fam in FAMILIES:
        if isinstance(backbone, fam.module_type):
            return fam
    raise TypeError(f"no backbone family for {type(backbone).__name__}")


def default_size(name: str) -> int:
    return _check_name(name).variants[name]["img_size"]


def build_backbone(name: str, pretrained: str | Path | None = None, img_size: int | None = None,
                   drop_path: float | None = None) -> nn.Module:
    """The timm backbone ``name`` (no classifier), optionally loaded from a local weights file, in eval mode."""
    family = _check_name(name)
    model = family.build(name, img_size, drop_path)
    if pretrained:
        load_weights(model, pretrained, family)
    return model.eval()


def list_backbones() -> list[str]:
    return list(BACKBONES)


__all__ = ["BACKBONES", "FAMILIES", "BackboneFamily", "build_backbone", "default_size", "describe_load_error",
           "family_of", "list_backbones", "load_weights", "read_state_dict", "require_family", "resolve_weights",
           "state_digest", "weights_identity", "weights_layout", "write_weights"]
