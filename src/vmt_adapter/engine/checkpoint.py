"""Training-state checkpoints: atomic, checksummed, and never the only copy.

``last.pt`` is written to a temporary file, flushed, fsynced and renamed; the checkpoint it
replaces becomes ``prev.pt``. A SHA-256 of the payload sits beside each file, so a truncated or
corrupt ``last.pt`` is detected on resume and ``prev.pt`` is used instead, with a warning.
Files are read with ``torch.load(weights_only=True)``: a checkpoint cannot execute code.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..fileio import atomic_write
from ..models.backbones import describe_load_error

LAST, PREV = "last.pt", "prev.pt"
KEYS = ("step", "skipped", "model", "optimizer", "scheduler", "config")  # what ``Trainer.state`` saves


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    last = run_dir / LAST
    if last.exists():  # keep the last good one until the new one is complete
        os.replace(last, run_dir / PREV)
        if (run_dir / (LAST + ".sha256")).exists():
            os.replace(run_dir / (LAST + ".sha256"), run_dir / (PREV + ".sha256"))
        else:  # killed between last.pt and its checksum: never pair prev.pt with an older file's checksum
            (run_dir / (PREV + ".sha256")).unlink(missing_ok=True)
    atomic_write(last, lambda tmp: Path(tmp).write_bytes(data))
    atomic_write(run_dir / (LAST + ".sha256"), lambda tmp: Path(tmp).write_text(_digest(data)))
    return last


def _read(path: Path) -> dict:
    data = path.read_bytes()
    sums = path.with_name(path.name + ".sha256")
    if sums.exists() and sums.read_text().strip() != _digest(data):
        raise CheckpointError(f"checkpoint {path} fails its checksum (truncated or corrupt)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign format, or a pickle that would run code
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {describe_load_error(exc)}") from exc
    missing = [k for k in KEYS if k not in state] if isinstance(state, dict) else list(KEYS)
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a vmt training checkpoint (no {', '.join(missing)})")
    return state


def load_checkpoint(run_dir: Path) -> dict | None:
    """The newest readable checkpoint of a run, or ``None`` when it has none at all."""
    candidates = [run_dir / LAST, run_dir / PREV]
    errors = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            state = _read(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            warnings.warn(f"{exc}; trying an older checkpoint", stacklevel=2)
            continue
        return state
    if errors:
        raise CheckpointError("no usable checkpoint in " + str(run_dir) + ": " + "; ".join(errors))
    return None
