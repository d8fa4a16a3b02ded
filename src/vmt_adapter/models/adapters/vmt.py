r"""VMT-Adapter and VMT-Adapter-Lite (Xin et al., AAAI 2024), as this project reads the paper.

For a Swin block with tokens ``x`` (N x d), frozen attention and MLP::

    a    = x + Attn(LN1(x))                    # frozen, unchanged
    z    = LN2(a)                              # the MLP's own normalised input
    m    = MLP(z)                              # frozen
    u    = act(z @ W_down + b_down)            # shared, d -> k
    u_t  = u * gamma_t + beta_t                # task t: element-wise scale and shift (init 1, 0)
    o_t  = u_t @ W_up + b_up                   # shared, k -> d (W_up, b_up start at zero)
    main stream:  x' = a + m + s * mean_t(o_t) # the one stream that runs through the backbone
    task stream:  x'_t = a + m + s * o_t       # only at the taps (last block of each stage)

``mean_t(o_t) = (u * mean(gamma) + mean(beta)) @ W_up + b_up``, so the main stream costs one
up-projection whatever T is. At a tap the T task streams differ from the main stream by
``s * ((u * (gamma_t - mean gamma) + (beta_t - mean beta)) @ W_up)``, never a Python loop over
tasks. The k-vectors scale the small (d, k) weight rather than the (B, N, k) activations,
``(u * g + b) @ W^T = u @ (W * g)^T + W @ b``, so the T offsets are one matmul of ``u`` against
T stacked (d, k) weights and no (T, B, N, k) tensor is ever made. Lite ties ``W_up = W_down^T`` (one
parameter, the same storage); its biases stay separate. See docs/design.md, section 1.

With ``model.taps: merged`` (the public code's decoder inputs, after the next stage's patch merging)
each task stream x'_t at a tap goes through that frozen patch merging on its own, ``P(x'_t)`` for the
T streams in one batched call, while the main stream goes on into the next stage as before; the
merging is not linear (its LayerNorm), so it cannot be applied to the offsets alone. This costs T
patch mergings per tap instead of one.

With ``model.taps: stage`` on Swin and decoders without a tap norm (``model.tap_norm: false``),
nothing non-linear lies between a task stream and its decoder's first 1x1 convolution R, so the
streams are never made: the taps return the shared map, the code u and the T (d, k) weights
``s * W_up * (gamma_t - mean gamma)`` with their biases, and each decoder computes
``R x'_t = R x' + (R W_t) u + R b_t`` (``models/taps``): T x k x r work per pixel instead of T x k x d.

Adding tasks to a trained adapter (``MultiTaskModel.add_tasks``, ``vmt train --from RUN --add-tasks``):
the mean in the main stream would move with every task added, and with it every old task. So at
the first addition the main stream's vectors are frozen as buffers at the trained tasks' mean::

    main stream:  x' = a + m + s * ((u * g_bar + b_bar) @ W_up + b_up),  g_bar, b_bar fixed buffers
    task stream:  x'_t = x' + s * ((u * (gamma_t - g_bar) + (beta_t - b_bar)) @ W_up)

which is the same arithmetic as before for the old tasks (their offsets are still one matmul of the
same shape), so their outputs stay bit-identical. A new task's vectors start at (g_bar, b_bar),
i.e. as the main stream, and only they (and the new decoders) train; W_down, W_up and the old
tasks' vectors stay frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..backbones import family_of
from ..backbones.base import Tapped
from ..recompute import recomputed
from ..taps import FactoredTap, Tap
from .base import ACTIVATIONS, AdapterLayer, Method, MethodConfig, adapted_blocks, check_positive, register


@dataclass
class VMTConfig(MethodConfig):
    """Hyper-parameters of VMT-Adapter and VMT-Adapter-Lite (the method's name says which: ``vmt-lite`` ties
    the up-projection to the down-projection)."""

    # Files written before the two were told apart by the method name alone carry ``lite: false``.
    RETIRED = {"lite": (False, "use model.method: vmt-lite for VMT-Adapter-Lite")}

    bottleneck: int = 128  # k, the shared bottleneck width in every block
    scale: float = 1.0  # s, fixed scale of the adapter branch
    act: str = "relu"  # non-linearity between the projections

    def __post_init__(self) -> None:
        check_positive(self, "vmt", "bottleneck")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"model.hparams.act {self.act!r}: choose from {', '.join(ACTIVATIONS)}")


@dataclass
class VMTLiteConfig(VMTConfig):
    """The same fields; no file of VMT-Adapter-Lite ever carried ``lite``."""

    RETIRED = {}


class VMTAdapter(AdapterLayer):
    """The adapter branch of one block: shared projections plus per-task scale and shift vectors."""

    TASK_SPECIFIC = ("gamma", "beta", "added_gamma", "added_beta")

    def __init__(self, dim: int, num_tasks: int, cfg: VMTConfig, lite: bool) -> None:
        super().__init__()
        self.scale = cfg.scale
        self.down = nn.Linear(dim, cfg.bottleneck)
        self.act = ACTIVATIONS[cfg.act]()
        # Lite: W_up is W_down^T (the same Parameter); otherwise a separate zero-initialised matrix.
        self.up_weight_own = None if lite else nn.Parameter(torch.zeros(dim, cfg.bottleneck))
        self.up_bias = nn.Parameter(torch.zeros(dim))
        self.gamma = nn.Parameter(torch.ones(num_tasks, cfg.bottleneck))  # task-specific, T x k
        self.beta = nn.Parameter(torch.zeros(num_tasks, cfg.bottleneck))  # task-specific, T x k
        # Tasks added after training (see the module doc): the frozen main-stream vectors and one
        # (count x k) pair of task vectors per addition.
        self.register_buffer("main_gamma", None)
        self.register_buffer("main_beta", None)
        self.added_gamma = nn.ParameterList()
        self.added_beta = nn.ParameterList()
        if lite:
            # A tied matrix cannot start at zero (it would kill the down-projection too): zero-init
            # the task scales instead, so the branch is still exactly zero at step 0.
            nn.init.zeros_(self.gamma)

    @property
    def up_weight(self) -> torch.Tensor:
        """(d, k) up-projection; for Lite a transposed view of the down-projection's storage."""
        return self.down.weight.t() if self.up_weight_own is None else self.up_weight_own

    def add_tasks(self, count: int) -> None:
        """Freeze the main stream at the trained tasks' mean (first addition) and append ``count``
        pairs of task vectors that start there."""
        with torch.no_grad():
            if self.main_gamma is None:
                self.main_gamma, self.main_beta = self.gamma.mean(0).clone(), self.beta.mean(0).clone()
            self.added_gamma.append(nn.Parameter(self.main_gamma.expand(count, -1).clone()))
            self.added_beta.append(nn.Parameter(self.main_beta.expand(count, -1).clone()))

    def _main(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``s * mean_t(o_t)`` (B, N, d) from the code u in one matmul (scale, mean task vectors and biases folded
        into the (d, k) weight and the bias, see the module doc), with the scaled weight and the mean vectors."""
        w = self.scale * self.up_weight  # d, k
        if self.main_gamma is None:
            g_mean, b_mean = self.gamma.mean(0), self.beta.mean(0)
        else:
            g_mean, b_mean = self.main_gamma, self.main_beta
        return F.linear(u, w * g_mean, self.scale * self.up_bias + w @ b_mean), w, g_mean, b_mean

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The main stream's adapter output ``s * mean_t(o_t)`` (B, N, d), for every block but a tap."""
        return self._main(self.act(self.down(z)))[0]

    def tap(self, z: torch.Tensor) -> tuple[torch.Tensor, TaskFactors]:
        """At a tap: the main stream's output and the T tasks' offsets from it, kept factored (``TaskFactors``)."""
        u = self.act(self.down(z))  # B, N, k
        main, w, g_mean, b_mean = self._main(u)
        # One group per addition, each its own product, so that adding tasks leaves the old ones' bits alone.
        groups = [(self.gamma, self.beta), *zip(self.added_gamma, self.added_beta)]
        return main, TaskFactors(u, [(w * (g - g_mean)[:, None, :], (b - b_mean) @ w.t()) for g, b in groups])


@dataclass
class TaskFactors:
    """The T task offsets of one tap, ``offset_t = W_t u + b_t``: the shared code u (B, N, k) and, per group of
    tasks trained together, their (T_g, d, k) weights and (T_g, d) biases."""

    code: torch.Tensor
    groups: list[tuple[torch.Tensor, torch.Tensor]]

    def offsets(self) -> torch.Tensor:
        """The offsets themselves, (T, B, N, d): one matmul of u against each group's stacked weights."""
        offsets = [F.linear(self.code, wt.flatten(0, 1), bt.flatten()).unflatten(-1, wt.shape[:2]).movedim(-2, 0)
                   for wt, bt in self.groups]  # each T_g, B, N, d (a view)
        return offsets[0] if len(offsets) == 1 else torch.cat(offsets)

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All tasks' (T, d, k) weights and (T, d) biases, for decoders that fold W_t into their first conv."""
        return torch.cat([w for w, _ in self.groups]), torch.cat([b for _, b in self.groups])


class ParallelMLP(nn.Module):
    """Wraps a frozen ``block.mlp`` (kept as ``base_layer``) with a VMT adapter in parallel: returns the main
    stream's MLP output ``m + s * mean_t(o_t)``; ``tapped`` also returns the task factors, for a tap block run
    through the family's ``tap_forward``."""

    def __init__(self, base_layer: nn.Module, adapter: VMTAdapter) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.base_layer(z) + self.adapter(z)

    def tapped(self, z: torch.Tensor) -> tuple[torch.Tensor, TaskFactors]:
        main, factors = self.adapter.tap(z)
        return self.base_layer(z) + main, factors


@register
class VMTMethod(Method):
    """VMT-Adapter: one backbone pass, task streams only at the last block of each stage."""

    name = "vmt"
    config_class = VMTConfig
    can_fold_taps = True
    lite = False

    def inject(self, backbone: nn.Module) -> None:
        for block in adapted_blocks(backbone):
            adapter = VMTAdapter(block.mlp.fc1.in_features, len(self.task_names), self.cfg, self.lite)
            block.mlp = ParallelMLP(block.mlp, adapter)

    def add_tasks(self, backbone: nn.Module, count: int) -> None:
        for module in backbone.modules():
            if isinstance(module, VMTAdapter):
                module.add_tasks(count)

    def no_weight_decay(self, name: str) -> bool:
        # Decaying gamma towards 0 would fight its init of 1; beta, like a bias, is not decayed either.
        return self.is_task_specific(name)

    def taps(self, backbone: nn.Module, x: torch.Tensor) -> list[Tap]:
        family = family_of(backbone)

        def tap(block: nn.Module, tokens: torch.Tensor) -> Tapped:
            return family.tap_forward(block, tokens, block.mlp.tapped)

        return [self._tap(backbone, out.main, out.extra, x, i) for i, out in enumerate(self.run(backbone, x, tap))]

    def _tap(self, backbone: nn.Module, main: torch.Tensor, factors: TaskFactors, x: torch.Tensor, level: int) -> Tap:
        """One level's tap: factored where the model folds (``fold_taps``), else the T dense task streams."""
        if self.fold_taps:
            code = factors.code.reshape(*main.shape[:-1], factors.code.shape[-1])  # main's layout, k channels
            return FactoredTap(self.maps(backbone, main, x, level), self.maps(backbone, code, x, level),
                               *factors.weights())

        def task_maps() -> torch.Tensor:
            offsets = factors.offsets()
            streams = main.unsqueeze(0) + offsets.view(offsets.shape[0], *main.shape)  # T, *main's layout
            return self.maps(backbone, streams, x, level)

        # Under ``recompute`` the T streams keep no activations until backward: with merged taps each stream's
        # patch merging (its LayerNorm's input and output) would otherwise be held for every task.
        return recomputed(self.recompute, task_maps)


@register
class VMTLiteMethod(VMTMethod):
    """VMT-Adapter-Lite: the up-projection is the transposed down-projection (one tied matrix)."""

    name = "vmt-lite"
    config_class = VMTLiteConfig
    lite = True
