"""The engine end to end on tiny SynthScenes runs: loss falls, exact resume, DDP, predict, config errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vmt_adapter.cli import main
from vmt_adapter.data.studio import VERSION as STUDIO_VERSION
from vmt_adapter.data.synth import VERSION
from vmt_adapter.engine.config import load_config
from vmt_adapter.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "vmt_adapter" / "configs" / "synth-vmt.yaml"
TINY = ["model.pretrained=", "data.cache_dir=", "data.size=64", "data.num_train=32", "data.num_val=8",
        "model.hparams={bottleneck: 16}",
        "train.batch_size=4", "train.log_every=1", "eval.batch_size=8"]


def sets(*items: str) -> list[str]:
    out = []
    for item in TINY + list(items):
        out += ["--set", item]
    return out


def vmt(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmt_adapter.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


def log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_training_run_lowers_the_loss(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--config", str(CONFIG), *sets("train.lr=3e-3", "train.warmup_steps=2"), "--steps", "24",
                 "--out", str(run), "--no-progress"]) == 0
    losses = [r["loss"] for r in log(run) if "loss" in r]
    assert len(losses) == 24 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    result = json.loads((run / "eval.json").read_text())
    assert set(result["metrics"]) == {"semseg", "human_parts", "sal", "normals"}
    assert result["details"]["normals"]["mean"] == result["metrics"]["normals"]
    assert (run / "adapter.safetensors").exists() and (run / "tb").is_dir()
    # `vmt eval` on the finished run reproduces the training run's final evaluation
    before = (run / "eval.json").read_bytes()
    assert main(["eval", "--run", str(run), "--reference", str(run)]) == 0  # a reference on the same dataset
    again = json.loads((run / "eval-val.json").read_text())
    assert again["metrics"] == result["metrics"] and again["dm"] is not None
    assert (run / "eval.json").read_bytes() == before  # the training's own evaluation stays untouched


def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    """SIGKILL mid-run, then --resume: the final adapter and metrics equal an uninterrupted run's."""
    args = ["train", "--config", str(CONFIG), *sets("train.ckpt_every=2"), "--steps", "10", "--no-progress"]
    whole = vmt(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "vmt_adapter.cli", *args, "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and not (cut / "metrics.jsonl").exists() or len(log(cut)) < 5:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "eval.json").exists()
    resumed = vmt(*args, "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "whole" / "adapter.safetensors")), load_file(str(cut / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = (json.loads((d / "eval.json").read_text()) for d in (tmp_path / "whole", cut))
    assert ea["details"] == eb["details"]
    lines = [[(r["step"], r.get("loss"), r.get("eval")) for r in log(run)] for run in (tmp_path / "whole", cut)]
    assert lines[0] == lines[1]  # training and evaluation lines alike


def test_twenty_random_kills_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """kill -9 at 20 random points (after 1 or 2 more logged steps and a random fraction of the next, so some land
    inside checkpoint writes), each time continued as a user would (--resume once a checkpoint exists, else a fresh
    start): full fine-tuning with drop-path, so the random streams must resume too, ends as the uninterrupted run."""
    import random

    args = ["train", "--config", str(CONFIG), *sets("model.method=mt-full", "model.hparams={}", "model.drop_path=0.2",
                                                    "train.ckpt_every=1", "data.num_train=16"), "--steps", "60",
            "--no-progress"]
    whole = vmt(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut, rng, kills = tmp_path / "cut", random.Random(0), 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while not (cut / "eval.json").exists():
        resume = ["--resume"] if any((cut / n).exists() for n in ("last.pt", "prev.pt")) else []
        proc = subprocess.Popen([sys.executable, "-m", "vmt_adapter.cli", *args, "--out", str(cut), *resume],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        if kills == 20:
            assert proc.wait() == 0, proc.stderr.read()
            break
        steps = lambda: len(log(cut)) if (cut / "metrics.jsonl").exists() else 0  # noqa: E731
        start, wait_for = steps(), rng.choice([1, 2])
        while proc.poll() is None and steps() < start + wait_for:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 20
    a, b = load_file(str(tmp_path / "whole" / "adapter.safetensors")), load_file(str(cut / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = (json.loads((d / "eval.json").read_text()) for d in (tmp_path / "whole", cut))
    assert ea["details"] == eb["details"]
    assert ([(r["step"], r.get("loss")) for r in log(tmp_path / "whole")]
            == [(r["step"], r.get("loss")) for r in log(cut)])


def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    """torchrun, 2 gloo processes x batch 2 == 1 process x batch 4 (same global batches)."""
    common = ["train", "--config", str(CONFIG), *sets(), "--steps", "4", "--no-progress"]
    one = vmt(*common, "--set", "train.batch_size=4", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", "-m", "vmt_adapter.cli", *common, "--set", "train.batch_size=2",
                          "--out", str(tmp_path / "two")], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-2000:]
    l1, l2 = ([r for r in log(tmp_path / d) if "loss" in r] for d in ("one", "two"))
    for r1, r2 in zip(l1, l2, strict=True):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4)
    e1, e2 = (json.loads((tmp_path / d / "eval.json").read_text())["metrics"] for d in ("one", "two"))
    for task in e1:
        assert e2[task] == pytest.approx(e1[task], rel=1e-3, abs=1e-2)


def test_predict_writes_images(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--config", str(CONFIG), *sets(), "--steps", "2", "--out", str(run), "--no-progress"]) == 0
    rgb = tmp_path / "a.png"
    Image.new("RGB", (80, 60), (120, 30, 200)).save(rgb)
    gray = tmp_path / "b.png"
    Image.new("L", (50, 70), 90).save(gray)
    rgba = tmp_path / "c.png"
    Image.new("RGBA", (64, 64), (1, 2, 3, 4)).save(rgba)
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), str(rgb), str(gray), str(rgba), "--out", str(out)]) == 0
    for stem in "abc":
        for task in ("semseg", "human_parts", "sal", "normals", "panel"):
            assert Image.open(out / f"{stem}_{task}.png").mode == "RGB"


def test_config_errors_are_one_line(tmp_path: Path, capsys) -> None:
    for bad, expected in [(["--set", "train.setps=3"], "did you mean 'steps'"),
                          (["--set", "train.steps=many"], "train.steps"),
                          (["--set", "tasks=[semseg,bogus]"], "bogus"),
                          (["--set", "data.name=pascal"], "data.root")]:
        assert main(["train", "--config", str(CONFIG), *bad, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err


def test_config_round_trip() -> None:
    cfg = load_config(CONFIG, ["train.steps=7", "model.method=lora", "model.hparams={rank: 4}"])
    assert cfg.train.steps == 7 and cfg.model.hparams == {"rank": 4} and cfg.model.method == "lora"


def test_demo_runs_end_to_end_and_reuses_finished_runs(tmp_path: Path, capfd) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out)]
    shared = [i for i in TINY if not i.startswith("model.hparams")]  # the demo's overrides apply to both methods
    for item in shared + ["train.steps=2", "train.warmup_steps=1", f"data.cache_dir={tmp_path / 'cache'}"]:
        args += ["--set", item]
    assert main(args) == 0
    if (os.cpu_count() or 1) >= 2:  # side by side, each run prints status lines instead of a progress bar
        printed = capfd.readouterr().out
        assert "[demo] vmt step 2/2 loss" in printed and "[demo] decoder-only step 2/2 loss" in printed
    report = (out / "report.md").read_text()
    assert "| vmt |" in report and "| decoder-only |" in report and "| prior |" in report
    rows = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in rows] == ["vmt", "decoder-only", "prior"]
    assert all(set(r["metrics"]) == {"semseg", "human_parts", "sal", "normals"} and "dm" in r for r in rows)
    assert rows[2]["trainable"] == 0
    assert (out / "predictions" / "val_0_compare.png").exists() and "val_0_compare.png" in report
    stamp = (out / "vmt" / "eval.json").stat().st_mtime
    assert main(args) == 0
    assert "reusing it" in capfd.readouterr().out
    assert (out / "vmt" / "eval.json").stat().st_mtime == stamp


def test_pretrain_writes_loadable_fp16_weights_and_its_loss_falls(tmp_path: Path) -> None:
    """Dense pretraining on 4 scenes for 40 steps memorises them: the loss must fall well below its start."""
    from safetensors import safe_open

    from vmt_adapter.models.backbones import build_backbone

    out, run = tmp_path / "nano.safetensors", tmp_path / "run"
    sets = ["data.size=64", "data.num_train=4", "data.num_val=4", "train.batch_size=4", "train.log_every=1",
            "train.warmup_steps=5", "data.cache_dir=" + str(tmp_path / "cache"), "train.lr=2e-3"]
    args = ["pretrain", "--config", "synth-pretrain", "--run", str(run), "--out", str(out), "--steps", "40",
            "--no-progress"]
    assert main(args + [a for item in sets for a in ("--set", item)]) == 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        assert meta["objective"] == "dense: depth, edge, coarse_shape" and meta["dataset_version"] == VERSION
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())  # noqa: SIM118 (not a dict)
        assert not any(k.startswith("head.") for k in f.keys())  # noqa: SIM118
    build_backbone("swin_nano", pretrained=out, img_size=64)  # every key fits the backbone
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 40 and min(losses[-5:]) < 0.7 * max(losses[:5])
    assert (run / "loss.png").stat().st_size > 0


def test_pretrain_refuses_downstream_scenes(tmp_path: Path, capsys) -> None:
    args = ["pretrain", "--config", "synth-pretrain", "--run", str(tmp_path / "r"), "--out",
            str(tmp_path / "w.safetensors"), "--steps", "1", "--set", "data.train_split=train"]
    assert main(args) == 2
    assert "must not read the downstream" in capsys.readouterr().err


@pytest.mark.parametrize("name, dataset, split", [("swin_nano_studio", STUDIO_VERSION, "train"),
                                                   ("swin_nano_synth", VERSION, "pretrain")])
def test_shipped_weights_load_into_the_backbone_they_name(name: str, dataset: str, split: str) -> None:
    from safetensors import safe_open

    from vmt_adapter.models.backbones import build_backbone, resolve_weights

    path = resolve_weights(f"builtin:{name}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["dataset_version"] == dataset and meta["split"] == split
    backbone = build_backbone(meta["backbone"], pretrained=f"builtin:{name}", img_size=int(meta["size"]))
    weights = load_file(str(path))
    assert torch.equal(backbone.state_dict()["patch_embed.proj.weight"], weights["patch_embed.proj.weight"].float())


@pytest.mark.parametrize("text, expected", [
    ("train:\n  steps: 2\n  steps: 9999\n", "duplicate key 'steps' at line 3 (first at line 2)"),
    ("", "is empty"),
    ("train: [1,\n", "not valid YAML at line"),
])
def test_config_files_that_would_mislead_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    from vmt_adapter.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
        load_config(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    from vmt_adapter.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_a_second_writer_is_refused_and_a_dead_holder_is_stale(tmp_path: Path) -> None:
    from vmt_adapter.engine.runlock import RunLock
    from vmt_adapter.errors import ConfigError

    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from vmt_adapter.engine.runlock import RunLock\n"
                               "with RunLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
                               str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"in use by another training \\(PID {holder.pid}\\)"), RunLock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # the killed holder's lock file is left behind, but holds no lock
        pass


def test_a_finished_run_without_checkpoints_is_not_overwritten(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--config", str(CONFIG), *sets(), "--steps", "1", "--out", str(run), "--no-progress"]) == 0
    for name in ("last.pt", "prev.pt", "last.pt.sha256", "prev.pt.sha256"):
        (run / name).unlink(missing_ok=True)
    before = (run / "eval.json").read_bytes()
    assert main(["train", "--config", str(CONFIG), *sets(), "--steps", "1", "--out", str(run), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "eval.json").read_bytes() == before


@pytest.mark.parametrize("item, expected", [
    ("data.size=50", "'data.size' must be a multiple of 32"),
    ("data.size=100000", "'data.size' must be a multiple of 32, at most 4096"),
    ("train.betas=[2, 3]", "'train.betas' must be two numbers in [0, 1)"),
    ("train.grad_clip=-1", "'train.grad_clip' must be non-negative"),
    ("train.weight_decay=-0.1", "'train.weight_decay' must be non-negative"),
    ("data.workers=-1", "'data.workers' must be non-negative"),
    ("seed=-1", "'seed' must be in 0..2**32 - 1"),
    ("seed=1180591620717411303424", "'seed' must be in 0..2**32 - 1"),
    ("tasks=[[semseg]]", "'tasks' must be a list of task names"),
    ("model.hparams={bottleneck: 1000000000}", "method 'vmt': bottleneck=1000000000 is above 65536"),
    ("model.hparams={botleneck: 8}", "unknown config key 'model.hparams.botleneck' (did you mean 'bottleneck'?)"),
    ("model.hparams={bottleneck: eight}", "config key 'model.hparams.bottleneck' must be int, got 'eight'"),
    ("device=cpux", "device 'cpux' is not a device name"),
    ("eval.precision=bf16", "'eval.precision' must be fp32 or train"),
    ("eval.split=test", "SynthScenes has no split 'test'"),
])
def test_bad_values_are_refused_before_any_work(item: str, expected: str) -> None:
    from vmt_adapter.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        load_config(CONFIG, [item])
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused() -> None:
    from vmt_adapter.errors import ConfigError

    with pytest.raises(ConfigError, match="CUDA is not available"):
        load_config(CONFIG, ["device=cuda"])


def test_a_16_bit_png_is_scaled_by_its_bit_depth(tmp_path: Path) -> None:
    from vmt_adapter.reporting.predict import load_image

    grey = np.full((4, 4), 32768, np.uint16)  # half of 16-bit full scale: mid-grey, not white
    Image.fromarray(grey).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8 and (rgb == 128).all()


def test_inputs_with_one_stem_get_distinct_outputs() -> None:
    from vmt_adapter.reporting.predict import output_stems

    assert output_stems([Path("a/x.png"), Path("b/x.jpg"), Path("y.png"), Path("c/x.png")]) == ["x", "x-2", "y", "x-3"]


def test_a_failing_tensorboard_writer_does_not_stop_training(tmp_path: Path, monkeypatch) -> None:
    import errno

    from torch.utils.tensorboard import SummaryWriter

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="TensorBoard logging stopped \\(No space left on device\\)"):
        assert main(["train", "--config", str(CONFIG), *sets(), "--steps", "3", "--out", str(run),
                     "--no-progress"]) == 0
    assert len([r for r in log(run) if "loss" in r]) == 3 and (run / "eval.json").exists()


def test_the_reference_lag_runs_step_k_at_the_rate_of_step_k_minus_1() -> None:
    """lr 1, warm-up 4 steps from 0.1: the rates are 0.1 + k x 0.225 by hand. The project runs steps 0, 1, 2 at
    0.1, 0.325, 0.55; with the public code's after-step update (lr_lag 1) at 0.1, 0.1, 0.325."""
    from vmt_adapter.engine.optim import lagged, warmup_cosine

    def rates(lag: int) -> list[float]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lagged(warmup_cosine(4, 100, 1.0, 0.1), lag))
        out = []
        for _ in range(3):
            out.append(opt.param_groups[0]["lr"])  # the rate this step runs at
            opt.step()
            sched.step()
        return out

    assert rates(0) == pytest.approx([0.1, 0.325, 0.55])
    assert rates(1) == pytest.approx([0.1, 0.1, 0.325])
    assert load_config("pascal-swin-t-vmt", ["data.root=x"]).train.lr_lag == 1
    assert load_config(CONFIG).train.lr_lag == 0  # the SynthScenes configs keep the project's schedule


def test_position_tables_are_decayed_only_when_asked_and_unused_updates_not_at_all() -> None:
    """Swin's relative-position tables sit in the no-decay group by default and in the decay group with
    ``decay_position_tables`` (the public multi-task code); MTLoRA's unused last shared fc2 update is in
    neither, so AdamW's decay cannot move it: with lr 0.1 and decay 0.5 a decayed tensor shrinks by 5 %."""
    from vmt_adapter.engine.optim import param_groups
    from vmt_adapter.models.factory import create_model
    from vmt_adapter.tasks import resolve_tasks

    torch.manual_seed(0)
    model = create_model("swin_nano", "mtlora", resolve_tasks("semseg,sal"), img_size=64, last_shared_fc2=True)
    names = {id(p): n for n, p in model.named_parameters()}
    unused = {n for n in names.values() if ".layers.3.blocks.1.base_layer.mlp.fc2.lora." in n}
    assert len(unused) == 2
    for decay_tables in (False, True):
        decay, no_decay = ({names[id(p)] for p in g["params"]} for g in param_groups(model, 0.5, decay_tables))
        tables = {n for n in names.values() if n.endswith("relative_position_bias_table")}
        assert (tables and tables <= (decay if decay_tables else no_decay)
                and not tables & (no_decay if decay_tables else decay))
        assert not unused & (decay | no_decay)
        assert decay | no_decay | unused == {n for n, p in model.named_parameters() if p.requires_grad}
    table = next(p for n, p in model.named_parameters() if n in tables)
    lone = next(p for n, p in model.named_parameters() if n in unused and n.endswith(".A"))
    before_table, before_lone = table.detach().clone(), lone.detach().clone()
    opt = torch.optim.AdamW(param_groups(model, 0.5, True), lr=0.1)
    for p in model.parameters():
        p.grad = None if not p.requires_grad else torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(table, before_table * 0.95)
    assert torch.equal(lone, before_lone)


def test_fp16_scales_the_loss_skips_an_overflowing_step_and_is_refused_on_cpu(tmp_path: Path, capsys) -> None:
    """Against plain SGD by hand: w = 3, loss = w^2 / 2, grad 3, lr 0.1 -> 2.7; through a GradScaler (scale
    2^16, a power of two, so exact) the step is the same. An infinite loss makes the scaler skip the step and
    halve its scale (torch's backoff factor 0.5). Training in fp16 on the CPU is refused in one line."""
    from vmt_adapter.engine.optim import grad_scaler, optimizer_step

    def step(loss_of, scaler) -> float:
        w = torch.nn.Parameter(torch.tensor([3.0]))
        optimizer_step(loss_of(w), torch.nn.Linear(1, 1), torch.optim.SGD([w], lr=0.1), 0.0, scaler)
        return w.item()

    assert step(lambda w: (w * w).sum() / 2, None) == pytest.approx(2.7)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert step(lambda w: (w * w).sum() / 2, scaler) == pytest.approx(2.7)
    assert step(lambda w: (w * w).sum() * float("inf"), scaler) == 3.0 and scaler.get_scale() == 2.0**15
    assert grad_scaler("bf16", torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="train.precision fp16 needs a CUDA device"):
        grad_scaler("fp16", torch.device("cpu"))
    assert main(["train", "--config", str(CONFIG), "--set", "train.precision=fp16", "--set", "device=cpu",
                 "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "train.precision fp16 needs a CUDA device" in capsys.readouterr().err


def test_reference_schedule_follows_timm_cosine_with_warmup_prefix() -> None:
    """By hand from timm's CosineLRScheduler(warmup_prefix=True) as the public code configures it:
    lr(t) = warmup_lr + t (lr - warmup_lr) / W during warm-up, then
    min_lr + (lr - min_lr)(1 + cos(pi (t - W) / (N - W))) / 2."""
    import math

    from vmt_adapter.engine.optim import warmup_cosine

    lr, wlr, mlr, warm, total = 3.125e-5, 3.125e-8, 3.125e-7, 3120, 46800
    f = warmup_cosine(warm, total, lr, wlr, mlr)
    assert f(0) * lr == pytest.approx(wlr)
    assert f(1560) * lr == pytest.approx(wlr + 1560 * (lr - wlr) / warm)
    assert f(warm) == pytest.approx(1.0)
    mid = warm + (total - warm) // 2
    assert f(mid) * lr == pytest.approx(mlr + (lr - mlr) * (1 + math.cos(math.pi * 0.5)) / 2)
    assert f(total) * lr == pytest.approx(mlr)
    project = warmup_cosine(20, 600)  # the project's default ramp and cosine to zero are unchanged
    assert project(0) == pytest.approx(1 / 20) and project(600) == pytest.approx(0.0)
    cfg = load_config("pascal-swin-t-vmt", ["data.root=x"])
    assert (cfg.train.steps, cfg.train.warmup_steps) == (300 * (4998 // 32), 20 * (4998 // 32))
    assert (cfg.train.warmup_lr, cfg.train.min_lr) == (5e-7 * 32 / 512, 5e-6 * 32 / 512)
