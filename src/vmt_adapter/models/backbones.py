"""Backbones by name: timm's Swin Transformer, built without weights, then loaded from a local file.

Variants are small argument tables (timm style); one builder makes every one of them. The
project never downloads weights: ``pretrained`` is a path the user names.
"""

from __future__ import annotations

import pickle
import re
import warnings
from importlib import resources
from pathlib import Path

import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from timm.layers import resize_rel_pos_bias_table
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn
from torch import nn

from ..errors import WeightsError
from ..fileio import sha256_file

BACKBONES: dict[str, dict] = {
    # ImageNet layouts of timm / Microsoft Swin; default input 448 as in the PASCAL-Context recipe.
    "swin_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, img_size=448),
    "swin_small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7, img_size=448),
    "swin_base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=7, img_size=448),
    # The embedded default's small Swin (about 5 M parameters), pretrained by `vmt pretrain`.
    "swin_nano": dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=4, img_size=128),
}


def default_size(name: str) -> int:
    return BACKBONES[_check_name(name)]["img_size"]


def _check_name(name: str) -> str:
    if name not in BACKBONES:
        raise WeightsError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return name


def build_backbone(name: str, pretrained: str | Path | None = None, img_size: int | None = None,
                   num_classes: int = 0) -> SwinTransformer:
    """A timm Swin for ``name``, optionally loaded from a local weights file, in eval mode.

    ``num_classes=0`` drops the classifier (dense prediction); pretraining asks for a head.
    The window attention pads, so inputs of any size work (``strict_img_size=False``).
    """
    kwargs = dict(BACKBONES[_check_name(name)])
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = SwinTransformer(num_classes=num_classes, strict_img_size=False, **kwargs)
    if pretrained:
        load_weights(model, pretrained)
    return model.eval()


BUILTIN_PREFIX = "builtin:"


def resolve_weights(path: str | Path) -> Path:
    """``builtin:NAME`` is a weights file shipped in the package (``resources/NAME.safetensors``)."""
    text = str(path)
    if text.startswith(BUILTIN_PREFIX):
        return Path(str(resources.files("vmt_adapter") / "resources" / f"{text[len(BUILTIN_PREFIX):]}.safetensors"))
    return Path(path)


def describe_load_error(exc: Exception) -> str:
    """One line for a ``torch.load(weights_only=True)`` failure; a refused pickle names what it would import."""
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        return (f"refused: it holds pickled Python objects{what} that could run arbitrary code; "
                "only tensors and plain containers are loaded")
    if isinstance(exc, (KeyError, EOFError)) or "invalid load key" in str(exc):  # torch.load on foreign bytes
        return "not a PyTorch, safetensors or checkpoint file (unrecognised bytes)"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or PyTorch file, the latter loaded with ``weights_only=True``."""
    path = resolve_weights(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return {k: v.float() for k, v in load_file(str(path)).items()}  # shipped weights are fp16
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusals, truncated files, foreign formats
        raise WeightsError(f"cannot read weights {path}: {describe_load_error(exc)}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    inner = state.get("model", state.get("state_dict", state))  # the official releases wrap theirs
    if not isinstance(inner, dict) or not all(isinstance(v, torch.Tensor) for v in inner.values()):
        raise WeightsError(f"weights file {path} holds no mapping of names to tensors "
                           f"(found {type(inner).__name__} under its top-level keys)")
    return state


TIMM_LAYOUT = "timm-swin/1"  # safetensors metadata "layout": keys as timm 1.x's SwinTransformer names them


def weights_layout(path: str | Path) -> str | None:
    """The ``layout`` a safetensors file declares in its metadata (None for other files or none declared)."""
    path = resolve_weights(path)
    if path.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("layout")
    except Exception:  # unreadable files are reported by read_state_dict with the file named
        return None


def _fit_position_tables(state: dict[str, torch.Tensor], model: SwinTransformer) -> dict[str, torch.Tensor]:
    """Resize relative-position tables to the model's windows (timm shrinks windows on small inputs)."""
    own = model.state_dict()
    for k, v in state.items():
        if k.endswith("relative_position_bias_table") and k in own and own[k].shape != v.shape:
            window = model.get_submodule(k[: -len(".relative_position_bias_table")]).window_size
            state[k] = resize_rel_pos_bias_table(v, new_window_size=window, new_bias_shape=own[k].shape)
    return state


def load_weights(model: SwinTransformer, path: str | Path) -> None:
    """Load timm-format or official Microsoft (``{'model': ...}``) Swin weights through timm's filter.

    Files that declare ``TIMM_LAYOUT`` (what ``vmt pretrain`` writes) bypass the filter, whose
    layout detection differs between timm versions.

    A classifier head in the file is ignored when the model has none; any other missing or
    unexpected key is an error that counts them and names a few.
    """
    raw = read_state_dict(path)
    with warnings.catch_warnings():  # timm's table resizing warns about its own tensor indexing
        warnings.simplefilter("ignore", UserWarning)
        if weights_layout(path) == TIMM_LAYOUT:  # our own files say so: no key guessing by the filter
            state = _fit_position_tables({k: v for k, v in raw.items()
                                          if not k.endswith(("relative_position_index", "attn_mask"))}, model)
        else:
            try:
                state = checkpoint_filter_fn(raw, model)
            except (AttributeError, KeyError, RuntimeError, ValueError) as exc:  # e.g. another variant's blocks
                raise WeightsError(f"weights {path} do not fit this backbone (timm's filter: "
                                   f"{' '.join(str(exc).split()) or type(exc).__name__})") from None
    if not isinstance(model.head.fc, nn.Linear):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith(("relative_position_index", "attn_mask")))
    unexpected = sorted(k for k in state if k not in own)
    wrong_shape = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise WeightsError(f"weights {path} do not fit this backbone: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def weights_identity(path: str | Path | None) -> dict:
    """What an adapter records of its base weights: the name given and the SHA-256 of the file."""
    if not path:
        return {"name": "random init", "sha256": None}
    return {"name": str(path), "sha256": sha256_file(resolve_weights(path))}


def list_backbones() -> list[str]:
    return list(BACKBONES)


__all__ = ["BACKBONES", "build_backbone", "default_size", "list_backbones", "load_weights", "read_state_dict", "timm",
           "weights_identity"]
