"""The one way to build a model from a description: training, evaluation, prediction, ``vmt params``,
``vmt bench`` and the adapter loader all call ``build_model``.

``ModelConfig`` is the ``model:`` section of a run config and what ``adapter.json`` records, so a
saved adapter is rebuilt by the same code path that trained it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..tasks import TaskSpec
from .adapters import METHODS, MethodConfig, read_config
from .multitask import MultiTaskModel


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
    """The model ``cfg`` describes for ``tasks`` at input size ``img_size`` (None: the variant's default);
    with ``task_groups``, built for the first group and grown by ``add_tasks`` for each later one."""
    names = [t.name for t in tasks]
    groups = cfg.task_groups or [names]
    if [n for g in groups for n in g] != names:
        raise ConfigError(f"model.task_groups {groups} must list the tasks {names} once each, in order")
    by_name = {t.name: t for t in tasks}
    model = MultiTaskModel(cfg.backbone, cfg.method, [by_name[n] for n in groups[0]], pretrained=cfg.pretrained or None,
                           img_size=img_size, decoder=cfg.decoder, decoder_ratio=cfg.decoder_ratio, taps=cfg.taps,
                           tap_norm=cfg.tap_norm, drop_path=cfg.drop_path,
                           backbone_train_mode=cfg.backbone_train_mode, decoder_fusion=cfg.decoder_fusion,
                           method_config=method_config(cfg))
    for group in groups[1:]:
        model.add_tasks([by_name[n] for n in group])
    return model
