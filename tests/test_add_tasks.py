"""Adding a task to a trained VMT adapter: the old tasks' outputs stay bit-identical, only the new part trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vmt_adapter
from vmt_adapter.cli import main
from vmt_adapter.errors import ConfigError
from vmt_adapter.models.backbones import build_backbone
from vmt_adapter.models.factory import create_model
from vmt_adapter.models.io import save_adapter
from vmt_adapter.models.multitask import MultiTaskModel
from vmt_adapter.tasks import resolve_tasks

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "vmt_adapter" / "configs" / "synth-vmt.yaml"


def trained(method: str, base: Path) -> MultiTaskModel:
    torch.manual_seed(0)
    torch.save(build_backbone("swin_nano", img_size=32).state_dict(), base)
    hparams = {} if method == "decoder-only" else {"bottleneck": 8}
    model = create_model("swin_nano", method, resolve_tasks("semseg,sal"), pretrained=base, img_size=32, **hparams)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))  # as if trained: far from the zero init
    return model


@pytest.mark.parametrize("method", ["vmt", "vmt-lite", "decoder-only"])
def test_old_tasks_stay_bit_identical_and_only_the_new_part_trains(method: str, tmp_path: Path) -> None:
    base = tmp_path / "base.pth"
    model = trained(method, base).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.add_tasks(resolve_tasks("depth"))
    expected = {n for n, _ in model.named_parameters() if n not in old}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert all(n.startswith("decoders.depth.") or ".added_" in n for n in expected)
    if method != "decoder-only":  # per block one (1 x k) pair of task vectors for the new task
        assert sum(p.numel() for n, p in model.named_parameters() if ".added_" in n) == 8 * 2 * 8
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        loss = model(x)["depth"].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = model(x)
    for task in ("semseg", "sal"):
        assert torch.equal(after[task], before[task]), task
    assert all(torch.equal(p, old[n]) for n, p in model.named_parameters() if n in old)
    save_adapter(model, tmp_path / "grown")
    assert (json.loads((tmp_path / "grown" / "adapter.json").read_text())["task_groups"]
            == [["semseg", "sal"], ["depth"]])
    with torch.no_grad():
        rebuilt = vmt_adapter.from_pretrained(tmp_path / "grown", base=base)(x)
    for task in ("semseg", "sal", "depth"):
        assert torch.equal(rebuilt[task], after[task]), task


@pytest.mark.parametrize("method,why", [("mt-full", "forgetting"), ("lora", "share nothing"),
                                        ("st-full", "share nothing"), ("mtlora", "norms and patch merging")])
def test_methods_that_cannot_add_a_task_say_why(method: str, why: str) -> None:
    model = create_model("swin_nano", method, resolve_tasks("sal"), img_size=32)
    with pytest.raises(ConfigError, match=rf"^method '{method}' cannot add a task to a trained run: .*{why}"):
        model.add_tasks(resolve_tasks("depth"))


def test_train_from_a_run_adds_a_task_and_keeps_the_old_metrics(tmp_path: Path, capsys) -> None:
    sets = ["model.pretrained=", "data.cache_dir=", "data.size=32", "data.num_train=4", "data.num_val=4",
            "model.hparams={bottleneck: 8}", "train.batch_size=2", "tasks=[semseg,sal]"]
    flags = [a for s in sets for a in ("--set", s)]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--config", str(CONFIG), "--steps", "2", "--out", str(first), "--no-progress", *flags]) == 0
    # Another seed for the addition: the random base must still be the first run's (drawn from its recorded seed).
    grow = ["--set", "data.cache_dir=", "--set", "data.num_train=4", "--set", "data.num_val=4", "--set",
            "train.batch_size=2", "--set", "seed=5"]
    assert main(["train", "--config", str(CONFIG), "--from", str(first), "--add-tasks", "depth", "--steps", "2",
                 "--out", str(second), "--no-progress", *grow]) == 0
    old, new = (json.loads((d / "eval.json").read_text())["metrics"] for d in (first, second))
    assert set(new) == {"semseg", "sal", "depth"}
    assert new["semseg"] == old["semseg"] and new["sal"] == old["sal"]
    capsys.readouterr()
    assert main(["eval", "--run", str(second)]) == 0  # the grown run rebuilds from its own folder
    assert main(["train", "--config", str(CONFIG), "--from", str(first), "--out", str(tmp_path / "x")]) == 2
    assert "--from RUN and --add-tasks TASKS go together" in capsys.readouterr().err
    wrong = {(str(tmp_path / "nowhere"), "depth"): "not a finished run folder (it needs config.yaml and adapter.json)",
             (str(first / "eval.json"), "depth"): "not a finished run folder",
             (str(first), "sal"): f"--add-tasks sal: the run {first} already has sal"}
    for (source, task), why in wrong.items():
        assert main(["train", "--config", str(CONFIG), "--from", source, "--add-tasks", task, "--out",
                     str(tmp_path / "y")]) == 2
        assert why in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # refused before anything was written
