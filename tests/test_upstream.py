"""Upstream pretraining on SynthStudio: the renderer, the masks, the objective, a tiny run with resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vmt_adapter.cli import main
from vmt_adapter.data.studio import CLASSES, SynthStudio, _hit, render_studio
from vmt_adapter.data.synth import _Shape
from vmt_adapter.experiments.upstream import losses, random_masks
from vmt_adapter.models.backbones import build_backbone


def test_studio_images_are_deterministic_and_labelled() -> None:
    assert len(CLASSES) == 5 * 3 * 4 and len(set(CLASSES)) == 60
    a, label = render_studio(0, 7, 32)
    b, again = render_studio(0, 7, 32)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and label == again and 0 <= label < 60
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, render_studio(1, 7, 32)[0])
    data = SynthStudio("val", size=32, num=12)
    assert data.images.shape == (12, 32, 32, 3) and data.labels.tolist() == [render_studio(0, 1_000_000 + i, 32)[1]
                                                                             for i in range(12)]


def test_floating_cylinder_is_closed_underneath() -> None:
    # A cylinder of radius 0.5 from y = -1 to y = 1; a ray from (0, -5, 0) straight up meets the base at t = 4.
    cylinder = _Shape("cylinder", np.array([0.0, -1.0, 0.0]), np.eye(3), np.array([0.5, 2.0]), np.zeros(3), 1.2)
    t = _hit(cylinder, np.array([0.0, -5.0, 0.0]), np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]))
    assert t[0] == pytest.approx(4.0) and np.isinf(t[1])


def test_random_masks_set_exactly_the_ratio_of_units() -> None:
    masks = random_masks(5, 64, 8, 0.5, torch.Generator().manual_seed(0))
    # 64 px / 8 px = 8 x 8 units, half of them masked, each unit 2 x 2 tokens of 4 px: 32 x 4 = 128 tokens.
    assert masks.shape == (5, 16, 16) and masks.sum(dim=(1, 2)).tolist() == [128.0] * 5
    assert torch.equal(masks[:, ::2, ::2].repeat_interleave(2, 1).repeat_interleave(2, 2), masks)


class _Fixed(torch.nn.Module):
    """Reconstructs every pixel 0.5 off where masked and 1.0 off elsewhere; uniform logits."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixel = mask.repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1)
        return x + 1.0 - 0.5 * pixel, torch.zeros(len(x), 60)


def test_reconstruction_loss_counts_masked_pixels_only() -> None:
    x = torch.randn(4, 3, 32, 32)
    mask = torch.zeros(4, 8, 8)
    mask[0, :4] = 1.0  # only the first image is masked, top half
    total, parts = losses(_Fixed(), x, torch.zeros(4, dtype=torch.long), mask, cls_weight=2.0)
    # L1 over masked pixels = 0.5; uniform logits over 60 classes: cross-entropy ln 60.
    assert parts["mim"].item() == pytest.approx(0.5) and parts["cls"].item() == pytest.approx(np.log(60))
    assert total.item() == pytest.approx(0.5 + 2.0 * np.log(60))
    _, unmasked = losses(_Fixed(), x, torch.zeros(4, dtype=torch.long), torch.zeros(4, 8, 8), 1.0)
    assert "mim" not in unmasked


TINY = ["data.size=32", "data.num_train=48", "data.num_val=16", "data.cache_dir=", "data.workers=1",
        "train.batch_size=8", "train.warmup_steps=1", "train.log_every=1", "train.ckpt_every=2"]


def pretrain(run: Path, out: Path, *extra: str) -> int:
    sets = [a for item in TINY for a in ("--set", item)]
    return main(["pretrain", "--run", str(run), "--out", str(out), "--steps", "4", *sets, "--no-progress", *extra])


def test_tiny_pretraining_resumes_exactly_and_loads_as_a_backbone(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "run" / "b.safetensors"
    assert pretrain(run, out) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "losses" in r] == [1, 2, 3, 4]
    assert all(set(r["losses"]) == {"mim", "cls"} for r in records if "losses" in r)
    final = records[-1]["eval"]
    assert 0 <= final["top1"] <= 100 and final["mim_l1"] > 0 and final["mim_l1_prior"] > 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["dataset_version"] == "synthstudio-1" and meta["steps"] == "4" and "SimMIM" in meta["objective"]
    build_backbone("swin_nano", pretrained=out, img_size=64)  # the file fits a plain backbone

    # Killed after step 2: the step-2 checkpoint, resumed, gives the same weights bit for bit.
    again = tmp_path / "again"
    shutil.copytree(run, again)
    (again / "last.pt").unlink()  # prev.pt holds step 2
    (again / "b.safetensors").unlink()
    assert pretrain(again, again / "b.safetensors", "--resume") == 0
    first, second = load_file(str(out)), load_file(str(again / "b.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    # A second start in the same folder is refused instead of mixing two runs.
    assert pretrain(run, out) == 2
