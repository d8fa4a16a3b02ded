"""Training-state checkpoints: atomic, self-checksummed, and never the only copy.

A checkpoint file is the ``torch.save`` payload followed by a trailer, ``MAGIC`` and the payload's
SHA-256, so a file and its checksum can never come apart. Saving is crash-safe at every point:

1. the new checkpoint is written completely as ``next.pt`` (temporary file, fsync, rename);
2. ``last.pt`` (if any) is renamed to ``prev.pt``;
3. ``next.pt`` is renamed to ``last.pt``.

A kill between any two steps leaves a complete newest checkpoint (``next.pt`` or ``last.pt``) and
the one before it; ``load_checkpoint`` takes the first valid of ``next.pt``, ``last.pt``,
``prev.pt``. A corrupt file, or one without a checksum, is skipped with a warning. Files are read with
``torch.load(weights_only=True)``: a checkpoint cannot execute code. Checkpoints of the earlier
format (checksum in a ``.sha256`` file beside them) are still read.

``best.pt`` (the trainable weights of the best evaluation, with its step and score) has the same
format and is written atomically in one step: the training state that says which evaluation is
best lives in the checkpoints, so a lost or stale ``best.pt`` is rewritten on resume.
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

NEXT, LAST, PREV, BEST = "next.pt", "last.pt", "prev.pt", "best.pt"
MAGIC = b"\nVMT-CHECKPOINT-SHA256:"
TRAILER = len(MAGIC) + 64
KEYS = ("step", "skipped", "model", "optimizer", "scheduler", "config")  # what ``Trainer.state`` saves
BEST_KEYS = ("step", "score", "against", "split", "model")  # what ``Trainer`` saves as best.pt


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rotate(run_dir: Path) -> None:
    """Steps 2 and 3: ``last.pt`` becomes ``prev.pt``, the complete ``next.pt`` becomes ``last.pt``."""
    last = run_dir / LAST
    if last.exists():
        os.replace(last, run_dir / PREV)
        (run_dir / (PREV + ".sha256")).unlink(missing_ok=True)  # an earlier format's checksum, now stale
    (run_dir / (LAST + ".sha256")).unlink(missing_ok=True)
    os.replace(run_dir / NEXT, last)


def _write(path: Path, state: dict) -> None:
    """``state`` as a checksummed file, atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data + MAGIC + _digest(data).encode()))


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    if (run_dir / NEXT).exists():  # a save killed after step 1: finish it, so that its checkpoint is kept
        _rotate(run_dir)
    _write(run_dir / NEXT, state)
    _rotate(run_dir)
    return run_dir / LAST


def save_best(run_dir: Path, best: dict) -> Path:
    _write(run_dir / BEST, best)
    return run_dir / BEST


def load_best(run_dir: Path) -> dict:
    """A run's ``best.pt``; a missing or damaged file is a ``CheckpointError`` naming it."""
    if not (run_dir / BEST).is_file():
        raise CheckpointError(f"{run_dir / BEST}: no such file (the run has not been evaluated yet)")
    return _read(run_dir / BEST, BEST_KEYS)


def _payload(path: Path) -> bytes:
    """The payload of a checkpoint file, checked against its own trailer (or an earlier format's side file)."""
    data = path.read_bytes()
    if data[-TRAILER:-64] == MAGIC:
        data, digest = data[:-TRAILER], data[-64:].decode(errors="replace")
        if digest != _digest(data):
            raise CheckpointError(f"checkpoint {path} fails its checksum (truncated or corrupt)")
        return data
    sums = path.with_name(path.name + ".sha256")
    if not sums.exists():
        raise CheckpointError(f"checkpoint {path} fails its checksum (no checksum trailer: truncated, or not "
                              "written by vmt)")
    if sums.read_text().strip() != _digest(data):
        raise CheckpointError(f"checkpoint {path} fails its checksum (truncated or corrupt)")
    return data


def _read(path: Path, keys: tuple[str, ...] = KEYS) -> dict:
    data = _payload(path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign format, or a pickle that would run code
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {describe_load_error(exc)}") from exc
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a vmt training checkpoint (no {', '.join(missing)})")
    return state


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete ``.*.tmp`` files that killed writers left (call only while holding the run's lock)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> dict | None:
    """The newest readable checkpoint of a run, or ``None`` when it has none at all."""
    candidates = [run_dir / NEXT, run_dir / LAST, run_dir / PREV]
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
