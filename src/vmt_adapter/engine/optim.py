"""Optimiser pieces shared by training and pretraining (the public Swin / MTLoRA recipe)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..models.multitask import MultiTaskModel


def param_groups(model: MultiTaskModel, weight_decay: float, decay_position_tables: bool = False) -> list[dict]:
    """No weight decay on 1-D parameters (biases, norms), as the public recipe exempts them, nor on
    what the model names in ``no_weight_decay()`` (the method's exemptions and, unless
    ``decay_position_tables``, the backbone family's). Parameters the method declares unused (they get
    no gradient in the public code) are left out, so that AdamW neither keeps state for them nor decays them."""
    exempt = model.no_weight_decay(family=not decay_position_tables)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad and not model.method.is_unused(name.removeprefix("backbone.")):
            (no_decay if p.ndim <= 1 or name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup: int, total: int, lr: float = 1.0, warmup_lr: float | None = None, min_lr: float = 0.0):
    """Per-step factor of ``lr``: linear warm-up, then cosine decay to ``min_lr``.

    Without ``warmup_lr`` the warm-up ramps as (step + 1) / warmup (the project's default). With it, it
    starts at ``warmup_lr`` and the cosine runs over the steps after the warm-up, as timm's
    ``CosineLRScheduler(warmup_prefix=True, warmup_lr_init, lr_min)`` does in the public MTLoRA / Swin
    code (``lr_scheduler.py``, stepped per iteration).
    """
    floor = min_lr / lr

    def factor(step: int) -> float:
        if step < warmup:
            if warmup_lr is None:
                return (step + 1) / warmup
            return (warmup_lr + step * (lr - warmup_lr) / warmup) / lr
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def lagged(factor: Callable[[int], float], lag: int) -> Callable[[int], float]:
    """``factor`` read ``lag`` steps late, never before step 0. The public code updates timm's scheduler after
    each optimizer step, so its step k runs at the rate of step k - 1 and the warm-up's first rate twice."""
    return factor if lag == 0 else (lambda step: factor(max(0, step - lag)))


def optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float,
                   scaler: torch.amp.GradScaler | None = None) -> None:
    """Backward, clip the gradient norm (0: no clipping), step; the update every training loop shares.

    With a ``scaler`` (fp16) the loss is scaled before backward and the gradients unscaled before
    clipping, and a step whose gradients overflowed is skipped while the scale backs off, as the public
    code's ``NativeScalerWithGradNormCount`` does.
    """
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 training's loss scaler: CUDA only, since small fp16 gradients vanish without one."""
    if precision != "fp16":
        return None
    if device.type != "cuda":
        raise ConfigError(f"train.precision fp16 needs a CUDA device (its GradScaler); this run is on {device.type}: "
                          "use bf16 or fp32")
    return torch.amp.GradScaler(device.type)
