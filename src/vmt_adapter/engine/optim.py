"""Optimiser pieces shared by training and pretraining (the public Swin / MTLoRA recipe)."""

from __future__ import annotations

import math

from ..models.multitask import MultiTaskModel


def param_groups(model: MultiTaskModel, weight_decay: float) -> list[dict]:
    """No weight decay on 1-D parameters (biases, norms), as the public recipe exempts them, nor on
    what the model names in ``no_weight_decay()`` (the backbone family's and the method's exemptions)."""
    exempt = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup: int, total: int):
    """Linear warm-up, then cosine decay to zero, per step."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor
