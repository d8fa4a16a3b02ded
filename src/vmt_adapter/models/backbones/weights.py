"""Reading local backbone weights: shipped ``builtin:`` files, safetensors, PyTorch files (never pickled
objects), and loading them into a family's model with every mismatch reported in one line; writing a
pretrained backbone as such a file.

The project never downloads weights: ``pretrained`` is a path the user names.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ...errors import WeightsError
from ...fileio import atomic_write, sha256_file
from .base import BackboneFamily

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


def state_mismatch(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                   optional: Iterable[str] = ()) -> str | None:
    """How ``state`` fails to fit ``expected`` (key to tensor), in one phrase (counts and a few names per
    kind), or None when every key is there with its shape; keys in ``optional`` may be missing."""
    optional = set(optional)
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
    parts = [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
             for label, keys in (("missing", missing), ("unexpected", unexpected), ("of wrong shape", wrong_shape))
             if keys]
    return "; ".join(parts) or None


def load_weights(model: nn.Module, path: str | Path, family: BackboneFamily) -> None:
    """Load a checkpoint through the family's filter (timm's, for foreign layouts).

    A classifier head in the file is ignored (dense models have none); any other missing or
    unexpected key is an error that counts them and names a few.
    """
    raw = read_state_dict(path)
    raw = raw.get("model", raw.get("state_dict", raw))  # the official releases wrap theirs
    with warnings.catch_warnings():  # timm's table resizing warns about its own tensor indexing
        warnings.simplefilter("ignore", UserWarning)
        try:
            state = family.filter_state(raw, model, own_layout=weights_layout(path) == family.layout)
        except (AttributeError, KeyError, RuntimeError, ValueError) as exc:  # e.g. another variant's blocks
            raise WeightsError(f"weights {path} do not fit this backbone (timm's filter: "
                               f"{' '.join(str(exc).split()) or type(exc).__name__})") from None
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (k.startswith("head.") and k not in own)}
    why = state_mismatch(state, own, optional=(n for n, _ in model.named_buffers()))
    if why:
        raise WeightsError(f"weights {path} do not fit this backbone: {why}")
    model.load_state_dict(state, strict=False)


def weights_identity(path: str | Path | None, random_init: dict | None = None) -> dict:
    """What an adapter records of its base weights: the name given and the SHA-256 of the file; for a
    randomly initialised backbone, the seed it was drawn from and a digest of the drawn tensors
    (``random_init``), so that a rebuild can draw them again and prove it did."""
    if not path:
        return {"name": "random init", "sha256": None} | (random_init or {})
    return {"name": str(path), "sha256": sha256_file(resolve_weights(path))}


def state_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes, in order): equal only for equal tensors."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_weights(backbone: nn.Module, family: BackboneFamily, out: Path, meta: dict[str, str]) -> None:
    """The backbone's weights as the plain timm module holds them, fp16 safetensors with the family's layout and
    ``meta``. Buffers are left out (the model rebuilds them); a final norm that dense models replace by an identity
    is stored at its initial values (weight 1, bias 0), so that the file loads into any timm module of the variant."""
    buffers = {n for n, _ in backbone.named_buffers()}
    state = {k: v.detach().half().contiguous() for k, v in backbone.state_dict().items() if k not in buffers}
    width = backbone.num_features
    state.setdefault("norm.weight", torch.ones(width, dtype=torch.float16))
    state.setdefault("norm.bias", torch.zeros(width, dtype=torch.float16))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: save_file(state, tmp, metadata={"layout": family.layout, **meta}))
