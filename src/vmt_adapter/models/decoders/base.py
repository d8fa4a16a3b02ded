"""What every dense head shares: its contract with the model, the tap check and the parameter-free channel norm."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class Decoder(nn.Module):
    """Base of the dense heads: ``forward(feats, size)`` takes the four tap maps (finest first) and returns the
    task's (B, C, *size). Besides, what the model may ask of a head, with what a plain head answers:

    - ``FUSIONS``: the orders of operations it offers (``model.decoder_fusion``), the first the default; the
      model sets ``fusion`` to the one asked for.
    - ``accepts_factored``: it takes VMT's factored tap maps (``models/taps``) where its first op is a 1x1 conv.
    - ``grad_checkpointing``: set by ``MultiTaskModel.set_grad_checkpointing``; a head that can recompute part of
      itself in backward reads it, others ignore it.
    """

    FUSIONS: ClassVar[tuple[str, ...]] = ("concat",)

    def __init__(self) -> None:
        super().__init__()
        self.fusion = self.FUSIONS[0]
        self.accepts_factored = False
        self.grad_checkpointing = False


def check_taps(in_channels: list[int], expected: int) -> None:
    if len(in_channels) != expected:
        raise ValueError(f"decoder expects {expected} taps, got {len(in_channels)}")


def channel_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free layer norm over the channels of an NCHW map.

    Why: Swin's stage outputs are residual streams with large per-channel offsets and small spread,
    which made the heads' BatchNorm depend on batch statistics its running averages could not match;
    dense-prediction Swin backbones add a norm per output for the same reason.
    """
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2]).permute(0, 3, 1, 2)
