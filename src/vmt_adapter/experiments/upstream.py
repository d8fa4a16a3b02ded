"""Image-level upstream pretraining of the embedded backbone on SynthStudio (``vmt pretrain``).

Why this objective: the embedded benchmark should behave like ImageNet -> PASCAL-Context, where the
backbone learned from image-level labels on another image distribution and never saw a dense label.
Two signals, both usual for Swin: SimMIM-style masked image modelling (Xie et al., CVPR 2022: mask
token after the patch embedding, a 1x1 conv + pixel shuffle from the stride-32 map, L1 on the
masked pixels) on part of each batch, and classification of the 60 fine SynthStudio classes from
the pooled last stage on every image. Masked modelling gives many targets per image (a small Swin
trained from scratch on image labels alone learns slowly); classification gives the semantic
grouping. The loop is small and self-contained (no task table: neither objective is a dense task),
and checkpoints and resumes like every run.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from ..data.studio import CLASSES, VERSION, SynthStudio
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..device import pick_device, seed_everything
from ..engine.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from ..engine.optim import optimizer_step, warmup_cosine
from ..engine.runlock import RunLock
from ..engine.train import NonFiniteLossError
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write
from ..models.backbones import build_backbone, family_of, write_weights
from ..reporting.figures import pyplot, save_figure
from ..typed import build


@dataclass
class UpstreamData:
    size: int = 64
    num_train: int = 30000
    num_val: int = 2000
    cache_dir: str = ""  # keep the rendered images here (one .npz a split)
    workers: int = 2  # rendering processes
    min_scale: float = 0.5  # random-resized-crop area range [min_scale, 1], then a horizontal flip


@dataclass
class UpstreamObjective:
    mask_ratio: float = 0.5  # of the mask units of a masked image
    mask_unit: int = 8  # pixels per side of a mask unit (a multiple of the patch size 4)
    masked_fraction: float = 0.5  # of each batch that is masked (reconstruction loss on these only)
    cls_weight: float = 1.0


@dataclass
class UpstreamModel:
    backbone: str = "swin_nano"
    drop_path: float = 0.1


@dataclass
class UpstreamTrain:
    steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 300
    grad_clip: float = 5.0
    log_every: int = 20
    ckpt_every: int = 250


@dataclass
class UpstreamConfig:
    """A pretraining config is one whose YAML has an ``objective`` section (see ``is_upstream``)."""

    seed: int = 0
    device: str = "auto"
    data: UpstreamData = field(default_factory=UpstreamData)
    objective: UpstreamObjective = field(default_factory=UpstreamObjective)
    model: UpstreamModel = field(default_factory=UpstreamModel)
    train: UpstreamTrain = field(default_factory=UpstreamTrain)

    def __post_init__(self) -> None:
        d, o, t = self.data, self.objective, self.train
        checks = [
            ("data.size", d.size >= 32 and d.size % 32 == 0, "a multiple of 32"),
            ("data.num_train", d.num_train >= 1, "at least 1"), ("data.num_val", d.num_val >= 1, "at least 1"),
            ("data.min_scale", 0 < d.min_scale <= 1, "in (0, 1]"),
            ("objective.mask_ratio", 0 < o.mask_ratio < 1, "in (0, 1)"),
            ("objective.mask_unit", o.mask_unit >= 4 and o.mask_unit % 4 == 0 and d.size % o.mask_unit == 0,
             "a multiple of 4 that divides data.size"),
            ("objective.masked_fraction", 0 <= o.masked_fraction <= 1, "in [0, 1]"),
            ("objective.cls_weight", o.cls_weight >= 0, "non-negative"),
            ("train.steps", t.steps >= 1, "at least 1"), ("train.batch_size", t.batch_size >= 2, "at least 2"),
            ("train.lr", t.lr > 0, "positive"), ("train.log_every", t.log_every >= 1, "at least 1"),
            ("train.ckpt_every", t.ckpt_every >= 1, "at least 1"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"config key {key!r} must be {expected}")


def is_upstream(tree: dict) -> bool:
    return "objective" in tree


def load_upstream_config(tree: dict) -> UpstreamConfig:
    cfg = build(UpstreamConfig, tree)
    pick_device(cfg.device)
    return cfg


class MaskedPretrainer(nn.Module):
    """The backbone with a mask token, a SimMIM pixel head and a linear classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.stride = 32
        self.mask_token = nn.Parameter(torch.zeros(backbone.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.pixels = nn.Sequential(nn.Conv2d(backbone.num_features, 3 * self.stride**2, 1),
                                    nn.PixelShuffle(self.stride))
        self.classifier = nn.Linear(backbone.num_features, num_classes)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask`` (B, H/4, W/4) is 1 where a patch token is replaced by the mask token."""
        tokens = self.backbone.patch_embed(image)  # (B, H/4, W/4, C)
        w = mask.unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * (1.0 - w) + self.mask_token * w
        feats = self.backbone.norm(self.backbone.layers(tokens))  # (B, H/32, W/32, C')
        return self.pixels(feats.permute(0, 3, 1, 2)), self.classifier(feats.mean(dim=(1, 2)))


def random_masks(n: int, size: int, unit: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(n, size/4, size/4) token masks: exactly ``round(ratio * units)`` mask units of ``unit`` px set in each."""
    side = size // unit
    count = round(ratio * side * side)
    order = torch.rand(n, side * side, generator=generator).argsort(dim=1)
    units = torch.zeros(n, side * side)
    units.scatter_(1, order[:, :count], 1.0)
    per = unit // 4
    return units.view(n, side, side).repeat_interleave(per, 1).repeat_interleave(per, 2)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> ImageNet-normalised float (B, 3, H, W), as every downstream run feeds the backbone."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def augment(images: torch.Tensor, min_scale: float, rng: random.Random) -> torch.Tensor:
    """Random resized crop (area [min_scale, 1], aspect 3/4-4/3) and a horizontal flip, image by image."""
    size = images.shape[-1]
    out = []
    for img in images:
        area = size * size * rng.uniform(min_scale, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        h = min(size, round(math.sqrt(area / aspect)))
        w = min(size, round(math.sqrt(area * aspect)))
        top, left = rng.randint(0, size - h), rng.randint(0, size - w)
        img = TF.resized_crop(img, top, left, h, w, [size, size], antialias=True)
        out.append(TF.horizontal_flip(img) if rng.random() < 0.5 else img)
    return torch.stack(out)


def losses(model: MaskedPretrainer, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
           cls_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SimMIM's L1 on the masked pixels (of the images with any mask) plus ``cls_weight`` x cross-entropy."""
    recon, logits = model(x, mask)
    pixel_mask = mask.repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1)
    parts = {"cls": F.cross_entropy(logits, labels)}
    if pixel_mask.sum() > 0:
        parts["mim"] = ((recon - x).abs() * pixel_mask).sum() / (pixel_mask.sum() * 3)
    total = parts.get("mim", torch.zeros((), device=x.device)) + cls_weight * parts["cls"]
    return total, parts


@torch.no_grad()
def evaluate(model: MaskedPretrainer, data: SynthStudio, cfg: UpstreamConfig, mean_image: torch.Tensor,
             prior_class: int, device: torch.device) -> dict[str, float]:
    """Held-out top-1 accuracy (unmasked images) and masked-pixel L1 (fixed masks), each beside its prior:
    the most frequent training class, and the per-pixel mean training image."""
    model.eval()
    o = cfg.objective
    gen = torch.Generator().manual_seed(1234)
    correct = l1 = l1_prior = count = 0.0
    for a in range(0, len(data), 256):
        images = torch.from_numpy(data.images[a:a + 256])
        labels = torch.from_numpy(data.labels[a:a + 256]).to(device)
        x = normalise(images).to(device)
        none = torch.zeros(len(x), x.shape[-2] // 4, x.shape[-1] // 4, device=device)
        correct += (model(x, none)[1].argmax(1) == labels).sum().item()
        mask = random_masks(len(x), x.shape[-1], o.mask_unit, o.mask_ratio, gen).to(device)
        pm = mask.repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1)
        l1 += ((model(x, mask)[0] - x).abs() * pm).sum().item()
        l1_prior += ((mean_image.to(device) - x).abs() * pm).sum().item()
        count += pm.sum().item() * 3
    model.train()
    n = len(data)
    return {"top1": 100.0 * correct / n, "top1_prior": 100.0 * float((data.labels == prior_class).mean()),
            "mim_l1": l1 / count, "mim_l1_prior": l1_prior / count}


def _param_groups(model: MaskedPretrainer, weight_decay: float) -> list[dict]:
    exempt = {f"backbone.{n}" for n in family_of(model.backbone).no_weight_decay(model.backbone)} | {"mask_token"}
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in exempt]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n in exempt]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def plot_upstream(log: Path, out: Path) -> None:
    """Training losses (log scale) and held-out top-1 against its prior, as a PNG."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if "losses" in r]
    evals = [r for r in rows if "eval" in r]
    fig, (ax, bx) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    for key in ("mim", "cls"):
        pts = [(r["step"], r["losses"][key]) for r in train_rows if key in r["losses"]]
        if pts:
            ax.plot(*zip(*pts), lw=1, label={"mim": "masked-pixel L1", "cls": "class cross-entropy"}[key])
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss (batch)", title="upstream losses")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if evals:
        bx.plot([r["step"] for r in evals], [r["eval"]["top1"] for r in evals], marker="o", label="held-out top-1")
        bx.axhline(evals[-1]["eval"]["top1_prior"], color="grey", ls="--", label="prior (most frequent class)")
    bx.set(xlabel="step", ylabel="top-1 (%)", title=f"{len(CLASSES)}-class accuracy")
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)


class UpstreamRun:
    """One pretraining run folder: ``config.json``, ``metrics.jsonl``, checkpoints, ``loss.png``."""

    def __init__(self, cfg: UpstreamConfig, run_dir: Path, resume: bool, progress: bool) -> None:
        self.cfg, self.run_dir, self.resume, self.progress = cfg, run_dir, resume, progress
        self.device = pick_device(cfg.device)
        seed_everything(cfg.seed, deterministic=True)
        backbone = build_backbone(cfg.model.backbone, pretrained=None, img_size=cfg.data.size,
                                  drop_path=cfg.model.drop_path)
        self.model = MaskedPretrainer(backbone, len(CLASSES)).to(self.device)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, t.weight_decay), lr=t.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           warmup_cosine(t.warmup_steps, t.steps))  # a factor of lr
        self.step = 0
        self.stop_signal: int | None = None

    def _state(self) -> dict:
        return {"step": self.step, "skipped": 0, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "config": asdict(self.cfg),
                "rng": torch.get_rng_state()}

    def _restore(self) -> None:
        state = load_checkpoint(self.run_dir)
        if state is None:
            raise CheckpointError(f"--resume: no checkpoint in {self.run_dir}")
        saved, now = state["config"], asdict(self.cfg)
        diffs = [f"{s}.{k}" for s in now if isinstance(now[s], dict) for k in now[s]
                 if saved.get(s, {}).get(k) != now[s][k] and k not in ("steps", "log_every", "ckpt_every", "workers")]
        diffs += [s for s in now if not isinstance(now[s], dict) and saved.get(s) != now[s]]
        if diffs:
            raise CheckpointError(f"--resume: the config differs from the checkpoint's in {', '.join(diffs)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.step = state["step"]
        log = self.run_dir / "metrics.jsonl"
        if log.exists():  # drop lines written after the checkpoint
            keep = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            atomic_write(log, lambda tmp: Path(tmp).write_text("".join(ln + "\n" for ln in keep)))

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _data(self, split: str, num: int) -> SynthStudio:
        d = self.cfg.data
        bar = tqdm(total=num, desc=f"render {split}", disable=not self.progress, dynamic_ncols=True)

        def report(done: int, total: int) -> None:
            bar.update(done - bar.n)
        data = SynthStudio(split, d.size, num, self.cfg.seed, d.cache_dir or None, d.workers, report)
        bar.close()
        return data

    def fit(self) -> dict | None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir):
            remove_stale_temporaries(self.run_dir)
            if self.resume:
                self._restore()
            elif (self.run_dir / "config.json").exists():
                raise ConfigError(f"{self.run_dir} already holds a pretraining run; use --resume or another --run")
            else:
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
                atomic_write(self.run_dir / "config.json",
                             lambda tmp: Path(tmp).write_text(json.dumps(asdict(self.cfg), indent=1)))
            train, val = self._data("train", self.cfg.data.num_train), self._data("val", self.cfg.data.num_val)
            old = {s: signal.signal(s, lambda signum, frame: setattr(self, "stop_signal", signum))
                   for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                self._loop(train, val)
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
            if self.stop_signal is not None:
                return None
            result = self._evaluate(train, val)
            self._log({"step": self.step, "eval": result})
            plot_upstream(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
            return result

    def _evaluate(self, train: SynthStudio, val: SynthStudio) -> dict[str, float]:
        mean_image = normalise(torch.from_numpy(train.images[:5000].astype(np.float32).mean(0, keepdims=True)))
        prior = int(np.bincount(train.labels, minlength=len(CLASSES)).argmax())
        return evaluate(self.model, val, self.cfg, mean_image, prior, self.device)

    def _loop(self, train: SynthStudio, val: SynthStudio) -> None:
        c, t, o = self.cfg, self.cfg.train, self.cfg.objective
        n_masked = round(o.masked_fraction * t.batch_size)
        side = c.data.size // 4
        self.model.train()
        bar = tqdm(total=t.steps, initial=self.step, desc="pretrain", disable=not self.progress, dynamic_ncols=True)
        tic, seen = time.perf_counter(), 0
        while self.step < t.steps:
            # Each step's batch, crops and masks are a function of (seed, step): a resumed run draws the same.
            rng = random.Random(c.seed * 1_000_003 + self.step)
            gen = torch.Generator().manual_seed(c.seed * 1_000_003 + self.step)
            idx = torch.randint(len(train), (t.batch_size,), generator=gen)
            images = augment(torch.from_numpy(train.images[idx.numpy()]).permute(0, 3, 1, 2), c.data.min_scale, rng)
            x = normalise(images.permute(0, 2, 3, 1)).to(self.device)
            labels = torch.from_numpy(train.labels[idx.numpy()]).to(self.device)
            mask = torch.zeros(t.batch_size, side, side)
            mask[:n_masked] = random_masks(n_masked, c.data.size, o.mask_unit, o.mask_ratio, gen)
            total, parts = losses(self.model, x, labels, mask.to(self.device), o.cls_weight)
            if not torch.isfinite(total):
                raise NonFiniteLossError(f"non-finite pretraining loss at step {self.step + 1}; the last good "
                                      f"checkpoint is kept in {self.run_dir}")
            self.optimizer.zero_grad(set_to_none=True)
            optimizer_step(total, self.model, self.optimizer, t.grad_clip)
            self.scheduler.step()
            self.step += 1
            seen += t.batch_size
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                rate = seen / (time.perf_counter() - tic)
                self._log({"step": self.step, "loss": total.item(), "lr": self.scheduler.get_last_lr()[0],
                           "losses": {k: v.item() for k, v in parts.items()}, "img_per_s": rate})
                bar.set_postfix(loss=f"{total.item():.3f}", img_s=f"{rate:.0f}")
            if self.step % (t.ckpt_every * 4) == 0 and self.step < t.steps:
                self._log({"step": self.step, "eval": self._evaluate(train, val)})
            if self.step % t.ckpt_every == 0 or self.step == t.steps or self.stop_signal is not None:
                save_checkpoint(self.run_dir, self._state())
            if self.stop_signal is not None:
                break
        bar.close()

    def export(self, out: Path) -> None:
        c = self.cfg
        backbone = self.model.backbone
        write_weights(backbone, family_of(backbone), out, {
            "backbone": c.model.backbone, "size": str(c.data.size), "dataset_version": VERSION,
            "objective": f"SimMIM (mask {c.objective.mask_ratio}) + {len(CLASSES)}-class classification",
            "split": "train", "num": str(c.data.num_train), "steps": str(self.step), "seed": str(c.seed)})


def pretrain_upstream(cfg: UpstreamConfig, run_dir: str | Path, out: str | Path, resume: bool = False,
                      progress: bool = True) -> dict | None:
    """Pretrain (or resume), then write the backbone to ``out``; None if interrupted."""
    run = UpstreamRun(cfg, Path(run_dir), resume, progress)
    result = run.fit()
    if result is None:
        return None
    run.export(Path(out))
    return {"out": str(out), "result": result, "loss_png": str(Path(run_dir) / "loss.png")}
