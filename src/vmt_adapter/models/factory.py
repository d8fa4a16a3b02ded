"""The one way to build a model from a description: training, evaluation, prediction, ``vmt params``,
``vmt bench`` and the adapter loader all call ``build_model``.

``ModelConfig`` is the ``model:`` section of a run config and what ``adapter.json`` records, so a
saved adapter is rebuilt by the same code path that trained it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..errors import ConfigError
from ..tasks import TaskSpec
from .adapters import METHODS, MethodConfig, build_method, read_config
from .backbones import build_backbone, state_digest
from .multitask import BaseIdentity, DecoderSpec, MultiTaskModel


@dataclass
class ModelConfig:
    backbone: str = "swin_nano"  # a name of models.backbones.BACKBONES
    method: str = "vmt"  # a name of models.adapters.METHODS
    pretrained: str = ""  # local backbone weights file (or builtin:NAME); empty = random init
    decoder: str = "hrnet"  # a name of models.decoders.DECODERS
    decoder_ratio: int = 4  # decoder width multiplier (hrnet: fusion width = ratio x 270, 4 = the benchmark's 1080)
    taps: str = "stage"  # what the decoders read: "stage" outputs, or (Swin) "merged" after the next patch merging
    tap_norm: bool = True  # a parameter-free channel norm on each tap before the decoder (a project departure)
    # hrnet: "concat" (the public head's order) or "per_level" (its first conv at each level's resolution: the
    # same function, fewer multiply-adds, outputs equal up to float rounding)
    decoder_fusion: str = "concat"
    drop_path: float | None = None  # stochastic depth of the backbone when it runs in train mode; None: timm's
    # a frozen backbone in train mode too (drop-path, LoRA dropout), as the public code
    backbone_train_mode: bool = False
    hparams: dict = field(default_factory=dict)  # the method's config: fields of its MethodConfig dataclass
    # Tasks added to a trained run (``vmt train --from RUN --add-tasks``): the task names in the groups
    # they were trained in, first the original run's; empty = all tasks trained together.
    task_groups: list = field(default_factory=list)
    from_run: str = ""  # the run whose adapter the first groups come from (training only)


def method_config(cfg: ModelConfig) -> MethodConfig:
    """``cfg.hparams`` read into the method's config dataclass (each key and type checked)."""
    if cfg.method not in METHODS:
        raise ConfigError(f"model.method {cfg.method!r}: choose from {', '.join(METHODS)}")
    return read_config(METHODS[cfg.method].config_class, cfg.hparams, cfg.method)


def build_model(cfg: ModelConfig, tasks: list[TaskSpec], img_size: int | None = None) -> MultiTaskModel:
    """The model ``cfg`` describes for ``tasks`` at input size ``img_size`` (None: the variant's default), assembled
    from its parts here, where every name is resolved; with ``task_groups``, built for the first group and grown
    by ``add_tasks`` for each later one."""
    names = [t.name for t in tasks]
    groups = cfg.task_groups or [names]
    if [n for g in groups for n in g] != names:
        raise ConfigError(f"model.task_groups {groups} must list the tasks {names} once each, in order")
    by_name = {t.name: t for t in tasks}
    first = [by_name[n] for n in groups[0]]
    pretrained = cfg.pretrained or None
    backbone = build_backbone(cfg.backbone, pretrained=pretrained, img_size=img_size, drop_path=cfg.drop_path)
    # A random backbone is not saved with an adapter: record the seed it was drawn from (that of the generator,
    # right after seeding) and a digest of the draw, so that a rebuild can redo and check it.
    random_init = None if pretrained else {"init_seed": torch.initial_seed(), "init_sha256": state_digest(backbone)}
    model = MultiTaskModel(backbone, build_method(cfg.method, [t.name for t in first], method_config(cfg)), first,
                           BaseIdentity(cfg.backbone, pretrained, random_init),
                           DecoderSpec(cfg.decoder, cfg.decoder_ratio, cfg.tap_norm, cfg.decoder_fusion),
                           taps=cfg.taps, backbone_train_mode=cfg.backbone_train_mode)
    for group in groups[1:]:
        model.add_tasks([by_name[n] for n in group])
    return model


def create_model(backbone: str, method: str, tasks: list[TaskSpec], img_size: int | None = None,
                 **settings: Any) -> MultiTaskModel:
    """``build_model`` from keywords: any ``ModelConfig`` field by name (``pretrained``, ``decoder``, ``taps``,
    ...), every other keyword a field of the method's config (``bottleneck=16``); for scripts and tests."""
    own = {f.name for f in fields(ModelConfig)} - {"hparams"}
    if "hparams" in settings:
        raise ConfigError("create_model: pass the method's fields as keywords, not hparams=")
    cfg = ModelConfig(backbone=backbone, method=method, **{k: v for k, v in settings.items() if k in own},
                      hparams={k: v for k, v in settings.items() if k not in own})
    return build_model(cfg, tasks, img_size)
