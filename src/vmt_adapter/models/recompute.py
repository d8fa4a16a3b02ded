"""Activation recomputation (``train.grad_checkpointing``): one call for every part that offers it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.checkpoint import checkpoint

R = TypeVar("R")


def recomputed(enable: bool, fn: Callable[..., R], *args: object) -> R:
    """``fn(*args)``; with ``enable``, while autograd records, its activations are not kept but recomputed in
    backward (non-reentrant checkpointing: any inputs and outputs, the random state restored for dropout)."""
    return checkpoint(fn, *args, use_reentrant=False) if enable and torch.is_grad_enabled() else fn(*args)
