"""The one way to build a model from a description: training, evaluation, prediction, ``vmt params``,
``vmt bench`` and the adapter loader all call ``build_model``.

``ModelConfig`` is the ``model:`` section of a run config and what ``adapter.json`` records, so a
saved adapter is rebuilt by the same code path that trained it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..tasks import TaskSpec
from .adapters import METHODS
from .multitask import MultiTaskModel


@dataclass
class ModelConfig:
    backbone: str = "swin_nano"  # a name of models.backbones.BACKBONES
    method: str = "vmt"  # a name of models.adapters.METHODS
    pretrained: str = ""  # local backbone weights file (or builtin:NAME); empty = random init
    bottleneck: int = 128  # VMT / VMT-Lite bottleneck k
    scale: float = 1.0  # VMT adapter scale s
    decoder: str = "hrnet"  # a name of models.decoders.DECODERS
    decoder_ratio: int = 4  # decoder width multiplier (hrnet: fusion width = ratio x 270, 4 = the benchmark's 1080)
    hparams: dict = field(default_factory=dict)  # any other keyword of the method


def method_keywords(cfg: ModelConfig) -> dict:
    """The method's keywords: the shared VMT keys where the method takes them, plus ``hparams``."""
    if cfg.method not in METHODS:
        raise ConfigError(f"model.method {cfg.method!r}: choose from {', '.join(METHODS)}")
    own = {n for n, p in inspect.signature(MultiTaskModel).parameters.items() if p.kind is not p.VAR_KEYWORD}
    if own & set(cfg.hparams):  # would collide with the model's own arguments (a TypeError otherwise)
        raise ConfigError(f"model.hparams cannot set {', '.join(sorted(own & set(cfg.hparams)))}; "
                          "use the model.* and data.* keys")
    accepted = inspect.signature(METHODS[cfg.method]).parameters
    common = {"bottleneck": cfg.bottleneck, "scale": cfg.scale}
    return {k: v for k, v in common.items() if k in accepted} | cfg.hparams


def build_model(cfg: ModelConfig, tasks: list[TaskSpec], img_size: int | None = None) -> MultiTaskModel:
    """The model ``cfg`` describes for ``tasks`` at input size ``img_size`` (None: the variant's default)."""
    return MultiTaskModel(cfg.backbone, cfg.method, tasks, pretrained=cfg.pretrained or None, img_size=img_size,
                          decoder=cfg.decoder, decoder_ratio=cfg.decoder_ratio, **method_keywords(cfg))
