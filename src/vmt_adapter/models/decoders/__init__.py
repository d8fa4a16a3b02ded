"""Dense heads by name (``model.decoder``): one file per head plus one row in ``DECODERS``.

A head subclasses ``base.Decoder`` (what the model may ask of it) and is built as
``cls(in_channels, out_channels, ratio, tap_norm)``: ``in_channels`` the four tap widths (finest first),
``ratio`` its width multiplier (``model.decoder_ratio``), ``tap_norm`` whether each tap is
channel-normalised first (``model.tap_norm``; the public code has no such norm); its forward takes the
four maps and the output size.
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import Decoder
from .hrnet import MultiScaleDecoder
from .segformer import SegFormerHead

DECODERS: dict[str, type[Decoder]] = {"hrnet": MultiScaleDecoder, "segformer": SegFormerHead}


def build_decoder(name: str, in_channels: list[int], out_channels: int, ratio: int, tap_norm: bool = True) -> Decoder:
    if name not in DECODERS:
        raise ConfigError(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}")
    return DECODERS[name](in_channels, out_channels, ratio, tap_norm)


__all__ = ["DECODERS", "Decoder", "MultiScaleDecoder", "SegFormerHead", "build_decoder"]
