"""Upstream pretraining of a small backbone on SynthScenes' reserved ``pretrain`` range.

The objective differs from the downstream tasks on purpose: scene-level multi-label recognition
(which object kinds appear in the image, BCE over ``SYNTH_CLASSES``) from the classifier head
of a plain timm Swin. The demo then adapts this genuinely pretrained, frozen backbone to dense
tasks on a disjoint seed range, so the adaptation is a real transfer.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from ..data.synth import SYNTH_CLASSES, SynthScenes
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..models.backbones import build_backbone
from ..device import seed_everything
from .optim import warmup_cosine


def render_set(num: int, size: int, seed: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All pretraining images (uint8 N, 3, H, W) and their multi-hot scene labels, rendered once."""
    ds = SynthScenes("pretrain", tasks=("semseg",), size=size, num=num, seed=seed)
    images = torch.empty(num, 3, size, size, dtype=torch.uint8)
    labels = torch.empty(num, len(SYNTH_CLASSES))
    for i in tqdm(range(num), desc="render", disable=not progress):
        raw = ds.raw(i)
        images[i] = torch.from_numpy(np.ascontiguousarray(raw["image"].transpose(2, 0, 1)))
        labels[i] = torch.from_numpy(raw["classes_present"])
    return images, labels


def pretrain(out: str | Path, backbone: str = "swin_nano", size: int = 128, num: int = 4000, steps: int = 3000,
             batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
             progress: bool = True) -> dict:
    """Train ``backbone`` from scratch; save its weights (fp16 safetensors, head dropped) to ``out``."""
    seed_everything(seed, deterministic=True)
    images, labels = render_set(num, size, seed, progress)
    model = build_backbone(backbone, img_size=size, num_classes=len(SYNTH_CLASSES)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps // 20, steps))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="pretrain", disable=not progress)
    start, hist = time.perf_counter(), []
    for step in bar:
        idx = torch.randint(0, num, (batch_size,), generator=g)
        x = (images[idx].float() / 255 - mean) / std
        flip = torch.rand(batch_size, generator=g) < 0.5
        x[flip] = x[flip].flip(-1)
        logits = model(x)
        y = labels[idx]
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        acc = ((logits > 0) == (y > 0.5)).float().mean().item()
        hist.append((loss.item(), acc))
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()
             if not k.startswith("head.") and not k.endswith(("relative_position_index", "attn_mask"))}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"backbone": backbone, "size": str(size), "objective": "synth multi-label",
                                         "steps": str(steps), "num": str(num), "seed": str(seed)})
    last = np.mean(hist[-50:], axis=0)
    return {"out": str(out), "seconds": time.perf_counter() - start, "final_loss": float(last[0]),
            "final_label_acc": float(last[1])}
