r"""MTLoRA (Agiza et al., CVPR 2024, arXiv 2403.20320), as its public code builds it on Swin.

Read from github.com/scale-lab/MTLoRA: ``models/lora.py`` (``MTLoRALinear``, ``shared_mode='matrix'``;
``mark_only_lora_as_trainable``), ``models/swin_transformer_mtlora.py`` (``SwinTransformerBlock``,
``BasicLayer``: task-specific layers only where ``i == depth - 1``; the task streams pass the stage's
patch merging), ``config.py`` (``TRAIN.FREEZE_* = False``) and
``configs/mtlora/tiny_448/mtlora_tiny_448_r64_scale4_pertask.yaml`` (the r = 64 row of the paper).

- **TA-LoRA**, shared by all tasks: a rank-64 update, scale 4 (the code's ``lora_shared_scale``, a
  plain multiplier), on qkv, proj, fc1 and fc2 of every block; B starts at zero.
- **TS-LoRA**, in the last block of each stage: proj, fc1 and fc2 also carry one rank-4 update per
  task (scale 4). On the streams [shared, task_1..task_T] such a layer returns
  ``W x_0 + b + shared(x_0)`` for the shared stream and ``W x_0 + b + task_t(x_t)`` for task t: the
  frozen weight reads the shared input and the task update the task's own input (proj reads the
  shared attention output for every task), exactly the public ``'matrix'`` mode. The block thus
  returns the shared stream, which runs on, and T task streams, which the decoders tap.
- **Trained besides** (the code's defaults, which the published 8.34 M counts): patch embedding,
  every LayerNorm, the relative-position tables and the patch-merging reductions
  (``also_train``; ``""`` trains the low-rank updates only). Biases stay frozen (``BIAS='none'``).

One backbone pass for all tasks. ``dropout`` is the public code's ``lora_dropout`` (0.05 there) on the
updates' input; like the backbone's drop-path it acts only when the backbone runs in train mode
(``model.backbone_train_mode``, set by the PASCAL configs; by default a frozen backbone stays in eval
mode). The taps follow ``model.taps`` like every other method's: ``stage`` (the default) reads the stage
outputs before patch merging; ``merged`` passes the task streams through the next stage's patch
merging as the public code does (decoder inputs 2C, 4C, 8C, 8C).

The public code also gives the last block's fc2 a shared update whose output, the last shared
stream, nothing reads (the decoders read the task streams); it never receives a gradient, but the
published 8.34 M counts it. ``last_shared_fc2: true`` (the PASCAL configs) builds it too, and the
optimizer leaves it out (``is_unused``), as AdamW skips a parameter without a gradient in the public
code; by default it is not built (245,760 parameters on Swin-T).

Swin-T, 4 PASCAL tasks, ``vmt params``: low-rank updates 4,552,704 (shared 4,276,224 + task
276,480), other trainable 1,599,546, decoders 1,801,472: trainable 7,953,722 (7.95 M). With
``model.taps: merged`` the decoders read the wider merged maps (1,946,624, the 1.94 M of docs/design.md, section 2):
trainable 8,098,874, and with the unused update (``last_shared_fc2``) 8,344,634, the published 8.34 M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from ...errors import ConfigError
from ..backbones import family_of, require_family
from ..backbones.base import Tapped
from .base import NORM_PARAMS, AdapterLayer, Method, MethodConfig, check_positive, register
from .lora import LoRALinear, LowRank, lora_dropout

EXTRAS = {  # the public code's name filters, on timm's parameter names
    "patch_embed": re.compile(r"^patch_embed\."),
    "norm": NORM_PARAMS,
    "rel_pos": re.compile(r"\.relative_position_bias_table$"),
    "merging": re.compile(r"\.downsample\.reduction\."),
}


class TaskSpecificLoRALinear(AdapterLayer):
    """TS-LoRA: a frozen linear layer with the shared update (none if ``rank`` is 0) and one update per task.

    With ``own_inputs`` (fc1, fc2) the input is the list [shared, task_1..task_T] of streams, and so is the
    output. Otherwise (proj) every task reads the shared input, and the 1 + T outputs are concatenated along
    dim 0, the window batch, so that timm's window merge carries them to the block. The streams stay
    separate tensors, as in the public code: on a CPU a stacked (1 + T)-fold tensor is past the size
    above which every allocation is fresh pages.
    """

    TASK_SPECIFIC = ("task_lora",)

    def __init__(self, base_layer: nn.Linear, rank: int, scale: float, num_tasks: int, task_rank: int,
                 task_scale: float, own_inputs: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        d_in, d_out = base_layer.in_features, base_layer.out_features
        self.lora = LowRank(1, d_in, d_out, rank, scale) if rank else None
        self.task_lora = LowRank(num_tasks, d_in, d_out, task_rank, task_scale)
        self.own_inputs = own_inputs
        self.dropout = lora_dropout(dropout)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        shared_in = x[0] if self.own_inputs else x
        dropped = self.dropout(shared_in)  # as the public code: the task streams' own inputs are not dropped
        # proj's tasks read one expanded input, whose gradient autograd then sums over the tasks in one reduction
        task_in = x[1:] if self.own_inputs else dropped.expand(self.task_lora.A.shape[0], *x.shape).unbind(0)
        frozen = self.base_layer(shared_in)
        shared = frozen if self.lora is None else self.lora(dropped, 0).add_(frozen)
        # built last task first, so that autograd sums the tasks' gradients of ``frozen`` in task order
        tasks = [self.task_lora.entry(t, i, plus=frozen) for i, t in reversed(list(enumerate(task_in)))][::-1]
        return [shared, *tasks] if self.own_inputs else torch.cat([shared, *tasks])


class MTLoRATapBlock(nn.Module):
    """The last block of a stage: returns the shared stream, which runs on, with the T task streams
    (T, B, H, W, C) as the tap's value. Uses timm's block parts, ``_attn`` included; the MLP (timm's
    ``Mlp`` steps in its order) maps the streams one by one, its widest tensors then a stream's size."""

    def __init__(self, base_layer: SwinTransformerBlock, num_tasks: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.num_tasks = num_tasks

    def forward(self, x: torch.Tensor) -> Tapped:
        blk = self.base_layer
        B, H, W, C = x.shape
        n = 1 + self.num_tasks
        # proj emits the 1 + T streams along the batch; drop-path draws per stream and sample, as the public code's
        # per-task calls on (B, N, C) do
        # the residual sums go in place into fresh tensors that no backward reads (x + y == y + x, bit for bit)
        a = blk.drop_path1(blk._attn(blk.norm1(x))).view(n, B, H, W, C).add_(x).view(n, B, H * W, C)
        mlp = blk.mlp
        h = [mlp.norm(mlp.drop1(mlp.act(t))) for t in mlp.fc1(blk.norm2(a).unbind(0))]
        m = torch.stack([mlp.drop2(t) for t in mlp.fc2(h)])
        out = blk.drop_path2(m.flatten(0, 1)).view_as(m).add_(a).view(n, B, H, W, C)
        return Tapped(out[0], out[1:])


@dataclass
class MTLoRAConfig(MethodConfig):
    rank: int = 64  # TA-LoRA (shared) rank
    shared_scale: float = 4.0
    task_rank: int = 4  # TS-LoRA (per task) rank
    task_scale: float = 4.0
    also_train: str = ",".join(EXTRAS)  # comma-separated EXTRAS groups; "" trains the low-rank updates only
    last_shared_fc2: bool = False  # the public code's shared update of the last fc2, which nothing reads
    dropout: float = 0.0  # on the low-rank updates' input, in train mode (``model.backbone_train_mode``); public: 0.05

    def __post_init__(self) -> None:
        check_positive(self, "mtlora", "rank", "task_rank")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.hparams.dropout (mtlora) {self.dropout}: a probability in [0, 1)")
        groups = [g.strip() for g in self.also_train.split(",") if g.strip()]
        unknown = [g for g in groups if g not in EXTRAS]
        if unknown:
            raise ConfigError(f"model.hparams.also_train (mtlora) {', '.join(unknown)}: "
                              f"choose from {', '.join(EXTRAS)}")
        self.also_train = ",".join(groups)


@register
class MTLoRAMethod(Method):
    name = "mtlora"
    config_class = MTLoRAConfig

    @property
    def extras(self) -> list[re.Pattern]:
        return [EXTRAS[g] for g in self.cfg.also_train.split(",") if g]

    def inject(self, backbone: SwinTransformer) -> None:
        require_family(self.name, family_of(backbone), ("swin",),
                       "its task streams follow the public code's Swin stages and patch merging")
        num_tasks = len(self.task_names)
        for s, stage in enumerate(backbone.layers):
            for i, block in enumerate(stage.blocks):
                is_tap = i == len(stage.blocks) - 1
                cfg = self.cfg
                block.attn.qkv = LoRALinear(block.attn.qkv, 1, cfg.rank, cfg.shared_scale, cfg.dropout)
                for parent, attr, own_inputs in ((block.attn, "proj", False), (block.mlp, "fc1", True),
                                                 (block.mlp, "fc2", True)):
                    base = getattr(parent, attr)
                    if not is_tap:
                        setattr(parent, attr, LoRALinear(base, 1, cfg.rank, cfg.shared_scale, cfg.dropout))
                        continue
                    # Nothing reads the very last shared stream: its fc2 update only if asked for.
                    last = (s, attr) == (len(backbone.layers) - 1, "fc2")
                    rank = 0 if last and not cfg.last_shared_fc2 else cfg.rank
                    layer = TaskSpecificLoRALinear(base, rank, cfg.shared_scale, num_tasks, cfg.task_rank,
                                                   cfg.task_scale, own_inputs, cfg.dropout)
                    if last and rank:  # built for the published count; nothing reads its output
                        layer.unused = ("lora",)
                    setattr(parent, attr, layer)
            stage.blocks[-1] = MTLoRATapBlock(stage.blocks[-1], num_tasks)

    def add_tasks(self, backbone: nn.Module, count: int) -> None:
        raise ConfigError("method 'mtlora' cannot add a task to a trained run: it trains the norms and patch "
                          "merging that every task reads")

    def is_other_trainable(self, name: str) -> bool:
        return any(p.search(name) for p in self.extras)

    def taps(self, backbone: SwinTransformer, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.maps(backbone, out.extra, x, i) for i, out in enumerate(self.run(backbone, x))]
