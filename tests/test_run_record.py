"""What a training run records beyond its weights: evaluation on the way (which must not move the
trajectory), the best checkpoint across a crash and resume, per-class IoU and run.json provenance.

Tiny SynthScenes runs (swin_nano at 64 px, a few steps) so that the file stays quick on two shared cores.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vmt_adapter.engine.train as train_module
from vmt_adapter import from_pretrained
from vmt_adapter.cli import main
from vmt_adapter.data.labels import HUMAN_PARTS
from vmt_adapter.engine.checkpoint import load_best, load_checkpoint
from vmt_adapter.engine.provenance import git_state

TINY = ["model.pretrained=", "data.cache_dir=", "data.size=64", "data.num_train=16", "data.num_val=4",
        "model.hparams={bottleneck: 8}", "train.batch_size=2", "eval.batch_size=4", "train.log_every=1",
        "train.ckpt_every=100", "tasks=[human_parts,normals]"]
# The backbone trains with drop-path, so every step draws from torch's global random stream: an
# evaluation that moved that stream would change every later step.
DRAWS = ["model.method=mt-full", "model.hparams={}", "model.drop_path=0.3"]


def train(out: Path, steps: int, *items: str, resume: bool = False) -> None:
    sets = [a for item in TINY + list(items) for a in ("--set", item)]
    args = ["train", "--config", "synth-vmt", "--steps", str(steps), "--out", str(out), "--no-progress", *sets]
    args += ["--resume"] * resume
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["/opt/env/bin/vmt", *args])  # what run.json records as the command line
        assert main(args) == 0


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def trained(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["model"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluating_during_training_leaves_weights_and_metrics_bitwise_unchanged(tmp_path: Path, monkeypatch) -> None:
    train(tmp_path / "end", 6, *DRAWS, "train.eval_every=0")
    train(tmp_path / "every", 6, *DRAWS, "train.eval_every=2")
    assert [r["step"] for r in records(tmp_path / "every") if "eval" in r] == [2, 4, 6]
    assert [r["step"] for r in records(tmp_path / "end") if "eval" in r] == [6]
    assert same(trained(tmp_path / "end"), trained(tmp_path / "every"))
    end, every = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("end", "every"))
    assert end["details"] == every["details"] and end["per_class"] == every["per_class"]
    losses = [[(r["step"], r["loss"]) for r in records(tmp_path / d) if "loss" in r] for d in ("end", "every")]
    assert losses[0] == losses[1]
    # The check can see a leak: without restoring the random streams, the evaluations move the weights.
    monkeypatch.setattr(train_module, "rng_preserved", lambda device: contextlib.nullcontext())
    train(tmp_path / "leaky", 6, *DRAWS, "train.eval_every=2")
    assert not same(trained(tmp_path / "end"), trained(tmp_path / "leaky"))


class Crash(Exception):
    pass


def test_best_checkpoint_is_the_same_after_a_crash_and_resume(tmp_path: Path, monkeypatch) -> None:
    """Evaluations at 2, 4, 6, 8, checkpoints at 4 and 8; the crash at step 7 comes after best.pt may have
    moved past the checkpoint's record. The resumed run must pick the straight run's best, same weights."""
    common = ("train.eval_every=2", "train.ckpt_every=4", "train.lr=3e-3", "train.warmup_steps=1")
    train(tmp_path / "straight", 8, *common)

    cut = tmp_path / "cut"
    real_step, calls = train_module.optimizer_step, []

    def crash_at_step_7(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise Crash
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "optimizer_step", crash_at_step_7)
    with pytest.raises(Crash):
        train(cut, 8, *common)
    monkeypatch.setattr(train_module, "optimizer_step", real_step)
    assert load_checkpoint(cut)["step"] == 4 and not (cut / "eval.json").exists()
    train(cut, 8, *common, resume=True)

    for run in (tmp_path / "straight", cut):
        evals = [r for r in records(run) if "eval" in r]
        assert [r["step"] for r in evals] == [2, 4, 6, 8]
        top = max(evals, key=lambda r: r["score"])  # the first of equal scores, as the trainer keeps it
        best = load_best(run)
        assert (best["step"], best["score"], best["against"], best["split"]) == (top["step"], top["score"], "prior",
                                                                                   "val")
        assert json.loads((run / "eval.json").read_text())["best"] == {k: best[k] for k in
                                                                        ("step", "score", "against", "split")}
        assert same(best["model"], load_file(str(run / "best" / "adapter.safetensors")))
        assert load_checkpoint(run)["best"]["step"] == best["step"]
    a, b = load_best(tmp_path / "straight"), load_best(cut)
    assert a["step"] == b["step"] and a["score"] == b["score"] and same(a["model"], b["model"])
    assert same(from_pretrained(cut / "best").trainable_state_dict(), b["model"])  # best/ is a usable adapter folder

    # run.json: the first start, then the resume from the checkpoint's step, and no host name anywhere
    record = json.loads((cut / "run.json").read_text())
    assert record["step"] == 0 and [r["step"] for r in record["resumes"]] == [4]
    assert record["command"].startswith("vmt train --config synth-vmt --steps 8 --out")
    assert record["resumes"][0]["command"].endswith("--resume")
    assert (record["device"] == "cpu" and record["world_size"] == 1
            and record["torch_threads"] == torch.get_num_threads())
    assert record["versions"]["torch"] == torch.__version__.split("+")[0] and record["machine"]["gpu"] is None
    host = socket.gethostname()
    assert len(host) < 4 or host not in (cut / "run.json").read_text()


def test_eval_json_names_each_class_of_the_label_map_tasks(tmp_path: Path) -> None:
    train(tmp_path / "run", 1, "train.eval_every=0")
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    parts = result["per_class"]["human_parts"]
    assert list(parts) == HUMAN_PARTS and set(result["per_class"]) == {"human_parts"}
    # mIoU counts a class absent from both sides as 0 (the reference convention): the mean of the list
    assert sum(v or 0.0 for v in parts.values()) / len(parts) == pytest.approx(result["metrics"]["human_parts"])
    assert "IoU_0" not in result["details"]["human_parts"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_is_the_commit_and_dirtiness_of_a_tracked_package(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    repo = package.parent
    git(repo, "init", "-q")
    git(repo, "add", "pkg/__init__.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert git_state(package) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}
    (repo / "untracked.txt").write_text("runs and notes do not make the tree dirty\n")
    assert git_state(package)["dirty"] is False
    (package / "__init__.py").write_text("x = 2\n")
    assert git_state(package)["dirty"] is True
    ignored = repo / "venv" / "pkg"  # a package installed into an ignored folder of some repository
    ignored.mkdir(parents=True)
    (ignored / "__init__.py").write_text("")
    assert git_state(ignored) is None
    assert git_state(tmp_path / "elsewhere") is None  # not a git checkout (not even a folder)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git at all
    assert git_state(package) is None


def test_report_prints_per_class_iou_and_provenance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, old = tmp_path / "run", tmp_path / "old"
    run.mkdir()
    old.mkdir()
    (run / "eval.json").write_text(json.dumps({
        "dataset": "synth", "metrics": {"human_parts": 30.0},
        "per_class": {"human_parts": {"background": 90.0, "head": 25.5, "torso": None}}}))
    (old / "eval.json").write_text(json.dumps({"dataset": "synth", "metrics": {"human_parts": 20.0}}))
    start = {"started": "2026-12-01T10:00:00+00:00", "step": 0, "command": "vmt train --config synth-vmt",
             "git": {"commit": "abc123", "dirty": True}, "versions": {"vmt_adapter": "0.1.0", "torch": "2.5.0"},
             "device": "cpu", "world_size": 1, "torch_threads": 2,
             "machine": {"platform": "Linux-6.1-x86_64", "machine": "x86_64", "cpus": 8, "gpu": None}}
    resume = {**start, "started": "2026-12-01T11:00:00+00:00", "step": 300, "git": None}
    (run / "run.json").write_text(json.dumps({**start, "resumes": [resume]}))
    assert main(["report", str(run), str(old), "--per-class", "--provenance"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("human_parts IoU (%)"):].splitlines()
    assert table[0].split() == ["human_parts", "IoU", "(%)", "run", "old"]
    assert [line.split() for line in table[2:5]] == [["background", "90.00", "-"], ["head", "25.50", "-"],
                                                     ["torso", "-", "-"]]
    assert "  started   2026-12-01T10:00:00+00:00 at step 0" in out
    assert "  source    git abc123 (dirty)" in out and "  source    not a git checkout (or no git)" in out
    assert "  resumed   2026-12-01T11:00:00+00:00 at step 300" in out
    assert "  device    cpu x 1 process(es), 2 torch thread(s)" in out
    assert "  machine   Linux-6.1-x86_64, 8 CPUs, GPU none" in out
    assert "old: no run.json" in out
    assert main(["report", str(run), "--per-class", "--provenance", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["per_class"]["human_parts"]["head"] == 25.5 and row["provenance"]["resumes"][0]["step"] == 300


def test_report_names_a_damaged_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "eval.json").write_text(json.dumps({"metrics": {"sal": 50.0}}))
    (tmp_path / "run.json").write_text("{not json")
    assert main(["report", str(tmp_path), "--provenance"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json: not valid JSON" in err
