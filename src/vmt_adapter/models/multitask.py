"""The multi-task model: a (frozen) backbone adapted by a method, and one decoder per task."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..tasks import TaskSpec
from .adapters import Method
from .backbones import family_of, weights_identity
from .decoders import Decoder, build_decoder
from .taps import task_input


@dataclass(frozen=True)
class DecoderSpec:
    """How the model builds a task's decoder, now and for tasks added later (``model.decoder*``, ``model.tap_norm``)."""

    name: str = "hrnet"
    ratio: int = 4  # width multiplier (hrnet: fusion width = ratio x 270)
    tap_norm: bool = True
    fusion: str = "concat"  # hrnet: the public order, or "per_level"


@dataclass(frozen=True)
class BaseIdentity:
    """What the backbone was built from: the variant's name, the weights file (None: a random draw, recorded by
    the seed it came from and a digest, so that a rebuild can draw it again and prove it did)."""

    backbone: str
    pretrained: str | Path | None = None
    random_init: dict | None = None


class MultiTaskModel(nn.Module):
    """``forward(images)`` returns ``{task: (B, C_task, H, W)}`` at the input resolution.

    Assembled from built parts (``factory.build_model`` resolves the names): a timm backbone with its weights,
    a method object holding its config, the tasks, and how to build their decoders. The method is injected
    here, each task gets a decoder, and everything but the method's trainable set and the decoders is frozen.
    The decoders and the method's trainable set (``Method.is_trainable``) train; unless the method
    fine-tunes the whole backbone (``trains_backbone``) or ``backbone_train_mode`` asks for the public
    code's behaviour, the backbone stays in eval mode (no dropout or drop-path) whatever ``train()`` says.
    """

    def __init__(self, backbone: nn.Module, method: Method, tasks: list[TaskSpec], base: BaseIdentity,
                 decoders: DecoderSpec = DecoderSpec(), taps: str = "stage", backbone_train_mode: bool = False) -> None:
        super().__init__()
        self.decoder_spec, self.taps, self.backbone_train_mode = decoders, taps, backbone_train_mode
        self.base = base
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]
        self.task_groups = [list(self.task_names)]  # the tasks trained together; later ones by add_tasks
        self.backbone = backbone
        # The taps never reach the classifier's final norm: dropping it keeps every count (and full
        # fine-tuning's trainable set) to parameters the model uses.
        self.backbone.norm = nn.Identity()
        family = family_of(self.backbone)
        if taps not in family.tap_layouts:
            raise ConfigError(f"model.taps {taps!r}: a {family.name} backbone offers {', '.join(family.tap_layouts)}")
        self.method = method
        self.method.inject(self.backbone)  # after loading weights, so the checkpoint keys still match
        if self.method.task_backbones is not None:  # registered before the decoders: the parameters' order
            self.task_backbones = self.method.task_backbones
        self.method.bind(self.backbone, taps)
        self.decoders = nn.ModuleDict({t.name: self._decoder(t) for t in self.tasks})
        self.method.fold_taps = (self.method.can_fold_taps and family.factorable(self.backbone, taps)
                                 and all(d.accepts_factored for d in self.decoders.values()))
        self._freeze()

    def _decoder(self, task: TaskSpec) -> Decoder:
        spec = self.decoder_spec
        decoder = build_decoder(spec.name, self.method.tap_channels(self.backbone), task.channels, spec.ratio,
                                spec.tap_norm)
        if spec.fusion not in decoder.FUSIONS:
            raise ConfigError(f"model.decoder_fusion {spec.fusion!r}: the {spec.name} head offers "
                              f"{', '.join(decoder.FUSIONS)}")
        decoder.fusion = spec.fusion
        decoder.grad_checkpointing = self.method.recompute
        return decoder

    def add_tasks(self, tasks: list[TaskSpec]) -> None:
        """Add ``tasks`` to a trained model without changing any existing task's outputs: the method
        gives them their own parameters (or says in one line that it cannot), each gets a decoder,
        and from then on only those train; everything trained before is frozen."""
        taken = [t.name for t in tasks if t.name in self.task_names]
        if taken or not tasks:
            raise ConfigError(f"add_tasks needs new task names; {', '.join(taken) or 'none given'} "
                              f"(the model has {', '.join(self.task_names)})")
        before = {n for n, _ in self.named_parameters()}
        self.method.add_tasks(self.backbone, len(tasks))
        self.method.bind(self.backbone, self.taps)
        self.method.task_names += [t.name for t in tasks]
        for t in tasks:
            self.decoders[t.name] = self._decoder(t)
        self.tasks += list(tasks)
        self.task_names = [t.name for t in self.tasks]
        self.task_groups.append([t.name for t in tasks])
        for name, p in self.named_parameters():
            p.requires_grad = name not in before

    @functools.cached_property
    def base_weights(self) -> dict:
        """Name and SHA-256 of the base weights, recorded in adapter files and checked on rebuild.

        Computed on first use: hashing a large weights file is not needed to build, train or bench a model.
        """
        return weights_identity(self.base.pretrained, self.base.random_init)

    @property
    def img_size(self) -> int:
        return self.backbone.patch_embed.img_size[0]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the backbone's blocks (a method's task streams too, where it makes them outside the blocks)
        and the decoders' fusion where a decoder offers it, in backward instead of keeping their activations.

        One-pass methods only: a per-task method switches its parameters between the T passes, so a
        recompute during backward would run with the last task's.
        """
        if enable and not self.method.one_pass:
            raise ConfigError(f"train.grad_checkpointing works with one-pass methods only; {self.method.name!r} "
                              "runs the backbone once per task with that task's parameters")
        self.method.recompute = enable
        for decoder in self.decoders.values():
            decoder.grad_checkpointing = enable

    def no_weight_decay(self, family: bool = True) -> set[str]:
        """Parameters the recipe does not decay, besides 1-D ones: the backbone family's (Swin's
        relative-position tables, ViT's position embedding and class token; only with ``family``: the
        public multi-task code decays them) and the method's own."""
        own = {f"{prefix}{n}" for prefix, backbone in self._backbones()
               for n in family_of(backbone).no_weight_decay(backbone)} if family else set()
        return own | {n for n, _ in self.named_parameters() if self.method.no_weight_decay(n.removeprefix("backbone."))}

    def _backbones(self) -> list[tuple[str, nn.Module]]:
        """The backbone and any per-task copies of it, with their parameters' prefix in the model."""
        copies = self.method.task_backbones or []
        return [("backbone.", self.backbone), *((f"task_backbones.{i}.", b) for i, b in enumerate(copies))]

    def _freeze(self) -> None:
        for _, backbone in self._backbones():
            for name, p in backbone.named_parameters():
                p.requires_grad = self.method.is_trainable(name)

    def train(self, mode: bool = True) -> MultiTaskModel:
        super().train(mode)
        if not (self.method.trains_backbone or self.backbone_train_mode):
            self.backbone.eval()
        for decoder in self.decoders.values():  # frozen by add_tasks: no BatchNorm statistics may move
            if not any(p.requires_grad for p in decoder.parameters()):
                decoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        size = images.shape[-2:]
        taps = self.method.taps(self.backbone, images)  # 4 x (T or 1, B, C, H, W), or factored
        return {name: self.decoders[name]([task_input(tap, i) for tap in taps], size)
                for i, name in enumerate(self.task_names)}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What an adapter file holds: the method's parameters (trained now or, before ``add_tasks``, earlier),
        the decoders, and their buffers (BatchNorm statistics, VMT's frozen main-stream vectors)."""
        state = {n: p.detach() for n, p in self.named_parameters()
                 if n.startswith("decoders.") or self.method.is_trainable(n.removeprefix("backbone."))}
        state.update({f"decoders.{n}": b.detach() for n, b in self.decoders.named_buffers()})
        state.update({f"backbone.{n}": b.detach() for n, b in self.backbone.named_buffers()
                      if self.method.is_adapter(n)})
        return state

    def parameter_counts(self) -> dict[str, int]:
        """Adapter, decoder, other trainable and frozen parameter counts (the scopes of docs/design.md, section 3)."""
        counts = dict(adapter=0, adapter_task_specific=0, decoders=0, other_trainable=0, trainable=0, frozen=0)
        for name, p in self.named_parameters():  # tied parameters are listed (and counted) once
            n = p.numel()
            if not p.requires_grad:
                counts["frozen"] += n
                continue
            counts["trainable"] += n
            inner = name.removeprefix("backbone.")
            if name.startswith("decoders."):
                counts["decoders"] += n
            elif name.startswith("backbone.") and self.method.is_adapter(inner):
                counts["adapter"] += n
                counts["adapter_task_specific"] += n if self.method.is_task_specific(inner) else 0
            else:
                counts["other_trainable"] += n
        return counts
