"""Reliability and security (issue 7): damaged checkpoints, signals, non-finite losses, untrusted files,
writes confined to the run directory, one-line CLI errors, and fuzzing of adapter files and loaders.

Kept small for two shared CPU cores: swin_nano at 64 px, bottleneck 16, two tasks, 8 steps; one
training run is shared (``base_run``) and the others are a few steps each.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file

import vmt_adapter.engine.train as train_module
from vmt_adapter.cli import main
from vmt_adapter.data.export import export_synth
from vmt_adapter.data.nyud import NYUDv2MT
from vmt_adapter.data.pascal import PascalContextMT
from vmt_adapter.data.transforms import build_transform
from vmt_adapter.engine.checkpoint import load_checkpoint, save_checkpoint
from vmt_adapter.engine.losses import MultiTaskLoss
from vmt_adapter.errors import CheckpointError, ConfigError, DataError, WeightsError
from vmt_adapter.models.backbones import read_state_dict
from vmt_adapter.models.factory import create_model
from vmt_adapter.models.io import load_adapter, model_from_adapter, save_adapter
from vmt_adapter.tasks import resolve_tasks

STEPS = 8
# The shared run's config. data.root is path-like on purpose: synth ignores it, and nothing may be written there.
CONFIG_TEXT = f"""\
seed: 0
tasks: [semseg, sal]
data: {{name: synth, root: ../../escape, size: 64, num_train: 16, num_val: 4}}
model: {{backbone: swin_nano, method: vmt, pretrained: "", hparams: {{bottleneck: 16}}}}
train: {{steps: {STEPS}, batch_size: 2, lr: 3.0e-3, warmup_steps: 1, log_every: 1, ckpt_every: 2}}
eval: {{batch_size: 4}}
"""
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in log(run) if "loss" in r]


def same_adapter(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "adapter.safetensors")), load_file(str(b / "adapter.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime, to see what a command wrote.

    The run lock (``.lock``) is left out: it records its latest holder's PID, not a result.
    """
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and p.name != ".lock"}


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("vmt ") and ": error: " in err and "\n" not in err and "Traceback" not in err, err
    return err


def copy_run(run: Path, dest: Path, checkpoints: bool = True) -> Path:
    ignore = None if checkpoints else shutil.ignore_patterns("*.pt", "*.sha256", "tb")
    return Path(shutil.copytree(run, dest, ignore=ignore))


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def base_run(sandbox: Path) -> dict:
    """One uninterrupted run, started from a working folder with a relative --out; what it wrote is recorded."""
    (sandbox / "configs").mkdir()
    config = sandbox / "configs" / "run.yaml"
    config.write_text(CONFIG_TEXT)
    work = sandbox / "work"
    work.mkdir()
    before = tree(sandbox)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code = main(["train", "--config", str(config), "--out", "runs/base", "--no-progress"])
    finally:
        os.chdir(cwd)
    assert code == 0
    after = tree(sandbox)
    changed = sorted(k for k in after if before.get(k) != after[k])
    return {"run": work / "runs" / "base", "config": config, "changed": changed, "sandbox": sandbox}


@pytest.fixture(scope="module")
def datasets(sandbox: Path) -> dict[str, Path]:
    roots = {}
    for layout in ("pascal", "nyud"):
        roots[layout] = sandbox / f"data_{layout}"
        export_synth(roots[layout], 4, 32, layout=layout, val_fraction=0.25)
    return roots


# ------------------------------------------------------------------------------------------ 4. writes


def test_training_writes_only_inside_the_run_directory(base_run: dict) -> None:
    """Config values (data.root '../../escape', the config's own folder) are never write destinations."""
    changed = base_run["changed"]
    assert changed and all(path.startswith("work/runs/base/") for path in changed), changed
    names = {Path(p).relative_to("work/runs/base").parts[0] for p in changed}
    assert names == {"config.yaml", "run.json", "metrics.jsonl", "tb", "last.pt", "prev.pt", "adapter.safetensors",
                     "adapter.json", "eval.json", "best.pt", "best"}
    assert not list(base_run["sandbox"].rglob("*.tmp")) and not (base_run["sandbox"] / "escape").exists()
    # adapter files follow the umask like every other file (not mkstemp's 0600)
    mode = (base_run["run"] / "adapter.json").stat().st_mode & 0o777
    assert mode == (base_run["run"] / "eval.json").stat().st_mode & 0o777


def test_refused_start_leaves_an_existing_run_untouched(base_run: dict, tmp_path: Path, capsys) -> None:
    run = copy_run(base_run["run"], tmp_path / "run")
    before = tree(run)
    code = main(["train", "--config", str(base_run["config"]), "--set", "train.lr=0.1", "--out", str(run)])
    assert "already holds a run; use --resume or another --out" in one_line_error(capsys, code)
    code = main(["train", "--config", str(base_run["config"]), "--set", "train.lr=0.1", "--out", str(run), "--resume"])
    assert "the config differs from the checkpoint's in train.lr" in one_line_error(capsys, code)
    assert tree(run) == before  # config.yaml in particular: a later `vmt eval` or `--resume` still reads the real one


def test_a_run_killed_before_its_first_checkpoint_says_so_and_starts_afresh(base_run: dict, tmp_path: Path,
                                                                            capsys) -> None:
    """Killed before config.yaml (only the lock-free log exists) or before the first checkpoint: --resume
    says what happened in one line, and a fresh start in the same folder is allowed and completes."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    code = main(["train", "--resume", "--out", str(run)])
    assert "holds no config.yaml, so the run was stopped before it began training" in one_line_error(capsys, code)
    code = main(["train", "--resume", "--out", str(tmp_path / "nowhere")])
    assert "nowhere does not exist" in one_line_error(capsys, code)
    shutil.copy(base_run["config"], run / "config.yaml")  # killed after config.yaml, before the first checkpoint
    code = main(["train", "--resume", "--out", str(run)])
    err = one_line_error(capsys, code)
    assert "no checkpoint in" in err and "start it again without --resume" in err
    assert main(tiny_train(base_run, run)) == 0 and (run / "eval.json").is_file()


# ------------------------------------------------------------------------------------------ 1. checkpoints


def test_corrupt_last_checkpoint_resumes_from_prev(base_run: dict, tmp_path: Path) -> None:
    """last.pt (step 8) truncated: --resume warns, restarts from prev.pt (step 6) and ends as the uninterrupted run."""
    run = copy_run(base_run["run"], tmp_path / "run")
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    for name in ("adapter.safetensors", "eval.json"):
        (run / name).unlink()
    with pytest.warns(UserWarning, match=r"last\.pt fails its checksum \(.*\); trying an older"):
        assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert same_adapter(run, base_run["run"])
    assert losses(run) == losses(base_run["run"])
    got, want = (json.loads((d / "eval.json").read_text()) for d in (run, base_run["run"]))
    assert got["details"] == want["details"] and got["step"] == STEPS


def test_resume_draws_the_same_drop_path_masks(tmp_path: Path) -> None:
    """Full fine-tuning with drop-path draws a mask every step from torch's stream: resumed from the step-2
    checkpoint it must draw what the uninterrupted run drew (the checkpoint holds every random state)."""
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG_TEXT.replace("method: vmt", "method: mt-full, drop_path: 0.5")
                      .replace("hparams: {bottleneck: 16}", "hparams: {}").replace(f"steps: {STEPS}", "steps: 4"))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--config", str(config), "--out", str(straight), "--no-progress"]) == 0
    copy_run(straight, resumed)
    (resumed / "last.pt").unlink()  # as if killed between the step-2 checkpoint and the next
    for name in ("adapter.safetensors", "eval.json"):
        (resumed / name).unlink()
    assert main(["train", "--resume", "--out", str(resumed), "--no-progress"]) == 0
    assert losses(resumed) == losses(straight) and same_adapter(resumed, straight)


def tiny_state(step: int) -> dict:
    return {"step": step, "skipped": 0, "model": {"w": torch.full((64,), float(step))}, "optimizer": {},
            "scheduler": {}, "config": {}}


@FUZZ
@given(data=st.data())
def test_damaged_last_checkpoint_is_detected(data: st.DataObject) -> None:
    """Any truncation or byte flip of last.pt (payload or checksum trailer) is caught: prev.pt is used."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        save_checkpoint(run, tiny_state(1))
        save_checkpoint(run, tiny_state(2))
        last = run / "last.pt"
        raw = bytearray(last.read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="keep")]
        else:
            for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4, unique=True)):
                raw[pos] ^= data.draw(st.integers(1, 255))
        last.write_bytes(bytes(raw))
        with pytest.warns(UserWarning, match=r"last\.pt fails its checksum"):
            state = load_checkpoint(run)
        assert state["step"] == 1


def test_both_checkpoints_corrupt_is_one_checkpoint_error(tmp_path: Path, base_run: dict, capsys) -> None:
    for step in (1, 2):
        save_checkpoint(tmp_path, tiny_state(step))
    for name in ("last.pt", "prev.pt"):
        (tmp_path / name).write_bytes(b"\x00" * 10)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError,
                                                  match=r"no usable checkpoint in .*last\.pt.*prev\.pt"):
        load_checkpoint(tmp_path)
    # through the CLI: one line
    run = copy_run(base_run["run"], tmp_path / "run")
    for name in ("last.pt", "prev.pt"):
        (run / name).write_bytes((run / name).read_bytes()[:1000])
    with pytest.warns(UserWarning):
        code = main(["train", "--resume", "--out", str(run)])
    err = one_line_error(capsys, code)
    assert f"no usable checkpoint in {run}: checkpoint {run / 'last.pt'} fails its checksum" in err


@pytest.mark.parametrize("crash_at", [0, 1, 2])
def test_a_kill_at_any_rename_of_a_save_leaves_the_newest_checkpoint(tmp_path: Path, monkeypatch,
                                                                      crash_at: int) -> None:
    """A save renames three times (tmp -> next.pt, last.pt -> prev.pt, next.pt -> last.pt); dying after the
    first k of them leaves step 3 loadable when k >= 1 (complete in next.pt or last.pt), else step 2; the next
    save keeps it as prev.pt."""
    save_checkpoint(tmp_path, tiny_state(1))
    save_checkpoint(tmp_path, tiny_state(2))
    real, calls = os.replace, []

    def dying_replace(src, dst):
        if len(calls) == crash_at:
            raise SystemExit("killed")  # nothing after this point runs, as with SIGKILL
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        save_checkpoint(tmp_path, tiny_state(3))
    monkeypatch.setattr(os, "replace", real)
    newest = 3 if crash_at else 2  # before the first rename the new checkpoint is only a temporary file
    assert load_checkpoint(tmp_path)["step"] == newest
    save_checkpoint(tmp_path, tiny_state(4))  # the next save after the crash rotates cleanly
    assert load_checkpoint(tmp_path)["step"] == 4 and not (tmp_path / "next.pt").exists()
    (tmp_path / "last.pt").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="last.pt fails its checksum"):
        assert load_checkpoint(tmp_path)["step"] == newest


def test_kills_during_checkpoint_renames_resume_to_the_uninterrupted_result(base_run: dict, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """The base run (8 steps, checkpoints every 2) killed after 0, 1 and 2 of the 3 renames of its step-4 save,
    then resumed: adapter, losses and evaluation equal the uninterrupted run's; a killed writer's temporary
    file is cleaned up."""
    real = os.replace
    for crash_at in (0, 1, 2):
        run = tmp_path / f"run{crash_at}"
        calls: list = []

        def dying_replace(src, dst, calls=calls, crash_at=crash_at):
            if Path(dst).name in ("next.pt", "last.pt", "prev.pt"):
                calls.append(dst)
                if len(calls) == 3 + crash_at:  # step 2's save renames twice (no last.pt to rotate yet)
                    raise SystemExit("killed")
            real(src, dst)

        monkeypatch.setattr(os, "replace", dying_replace)
        with pytest.raises(SystemExit):
            main(["train", "--config", str(base_run["config"]), "--out", str(run), "--no-progress"])
        monkeypatch.setattr(os, "replace", real)
        (run / ".last.pt.99999.deadbeef.tmp").write_bytes(b"half a checkpoint")  # what a real kill can leave
        assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
        assert same_adapter(run, base_run["run"]) and losses(run) == losses(base_run["run"])
        got, want = (json.loads((d / "eval.json").read_text()) for d in (run, base_run["run"]))
        assert got["metrics"] == want["metrics"]
        assert not list(run.glob(".*.tmp"))


def test_a_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_state(1))
    save_checkpoint(tmp_path, {"weights": torch.zeros(2)})  # loads with weights_only, but is no training state
    with pytest.warns(UserWarning, match=r"last\.pt is not a vmt training checkpoint \(no step, skipped, model"):
        assert load_checkpoint(tmp_path)["step"] == 1


class RunsCode:
    """A pickle that runs a shell command when unpickled (the classic ``__reduce__`` payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_pickled_code_is_never_run(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    # training checkpoints, with valid checksums so that only weights_only stands in the way
    for step in (1, 2):
        save_checkpoint(tmp_path, {**tiny_state(step), "model": RunsCode(marker)})
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert "refused: it holds pickled Python objects (posix.system) that could run arbitrary code" in str(info.value)
    # backbone weights in pickle format, directly and through `vmt train`
    evil = tmp_path / "backbone.pth"
    torch.save({"patch_embed.proj.weight": RunsCode(marker)}, evil)
    with pytest.raises(WeightsError, match=r"cannot read weights .*backbone\.pth: refused: .*posix\.system"):
        read_state_dict(evil)
    code = main(["train", "--set", f"model.pretrained={evil}", "--set", "model.hparams={bottleneck: 16}",
                 "--set", "data.size=64",
                 "--out", str(tmp_path / "run")])
    assert "refused: it holds pickled Python objects (posix.system)" in one_line_error(capsys, code)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the control: the payload is live, and would have left the marker
    assert marker.exists()


# ------------------------------------------------------------------------------------------ 2. SIGTERM


def test_sigterm_checkpoints_exits_143_and_resumes(base_run: dict, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "vmt_adapter.cli", "train", "--config", str(base_run["config"]),
                             "--out", str(cut), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not ((cut / "metrics.jsonl").exists() and len(log(cut)) >= 2):
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    state = load_checkpoint(cut)
    logged = max(r["step"] for r in log(cut))
    assert 2 <= state["step"] == logged < STEPS  # saved at the step it stopped at, not at a ckpt_every multiple only
    assert not (cut / "adapter.safetensors").exists() and not (cut / "eval.json").exists()
    assert main(["train", "--resume", "--out", str(cut), "--no-progress"]) == 0
    assert same_adapter(cut, base_run["run"]) and losses(cut) == losses(base_run["run"])


# ------------------------------------------------------------------------------------------ 3. non-finite loss


def poisoned(at_call: int, task: str) -> type[MultiTaskLoss]:
    """A criterion whose ``task`` loss is infinite on its ``at_call``-th call (= training step), as a diverging run."""

    class Poisoned(MultiTaskLoss):
        calls = 0

        def forward(self, outputs, batch):
            total, per_task = super().forward(outputs, batch)
            Poisoned.calls += 1
            if Poisoned.calls == at_call:
                per_task = {**per_task, task: per_task[task] + float("inf")}
                total = total + per_task[task]
            return total, per_task

    return Poisoned


def tiny_train(base_run: dict, out: Path, *sets: str) -> list[str]:
    args = ["train", "--config", str(base_run["config"]), "--out", str(out), "--no-progress"]
    for item in ("train.steps=4", *sets):
        args += ["--set", item]
    return args


def test_nonfinite_loss_stops_naming_step_and_task(base_run: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(train_module, "MultiTaskLoss", poisoned(3, "sal"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 99, "loss": 1.0}\n')  # a run killed before its first checkpoint
    code = main(tiny_train(base_run, run, "train.ckpt_every=1"))
    err = one_line_error(capsys, code)
    assert err == ("vmt train: error: non-finite loss at step 3 in task(s) sal; "
                   f"the last good checkpoint is kept in {run}")
    assert load_checkpoint(run)["step"] == 2
    assert [r["step"] for r in log(run)] == [1, 2]  # the stale line is gone, nothing of step 3
    assert not (run / "adapter.safetensors").exists()


def test_nonfinite_loss_can_be_skipped_and_counted(base_run: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train_module, "MultiTaskLoss", poisoned(3, "semseg"))
    run = tmp_path / "run"
    assert main(tiny_train(base_run, run, "train.on_nonfinite=skip", "data.num_val=2")) == 0
    assert [r["skipped"] for r in log(run) if "loss" in r] == [0, 0, 1, 1]
    state = load_checkpoint(run)
    assert state["skipped"] == 1 and state["step"] == 4
    assert int(state["optimizer"]["state"][0]["step"]) == 3  # the skipped step changed no weight
    assert (run / "eval.json").exists()


# ------------------------------------------------------------------------------------------ 5. fuzzing

JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)


class Files(dict):
    """A fixture's dict whose repr stays short in Hypothesis reports (it holds megabytes of weights)."""

    def __repr__(self) -> str:
        return f"<{', '.join(self)}>"


@pytest.fixture(scope="module")
def adapter(sandbox: Path) -> Files:
    torch.manual_seed(0)
    model = create_model("swin_nano", "vmt", resolve_tasks("semseg,sal"), img_size=64, bottleneck=16)
    folder = save_adapter(model, sandbox / "adapter")
    weights = (folder / "adapter.safetensors").read_bytes()
    return Files(model=model, weights=weights, header=8 + int.from_bytes(weights[:8], "little"),
                 json=(folder / "adapter.json").read_text())


def damage_bytes(data: st.DataObject, raw: bytes, hot: int) -> bytes:
    """Truncate, flip bytes (mostly in the first ``hot`` bytes: the header), or overwrite a run of bytes."""
    out = bytearray(raw)
    how = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]), label="how")
    if how == "truncate":
        return bytes(out[: data.draw(st.integers(0, len(out) - 1), label="keep")])
    if how == "flip":
        for pos in data.draw(st.lists(st.integers(0, min(hot, len(out)) - 1), min_size=1, max_size=4), label="at"):
            out[pos] ^= data.draw(st.integers(1, 255))
        return bytes(out)
    start = data.draw(st.integers(0, min(hot, len(out)) - 1), label="start")
    junk = data.draw(st.binary(min_size=1, max_size=32), label="junk")
    return bytes(out[:start] + junk + out[start + len(junk):])


@FUZZ
@given(data=st.data(), target=st.sampled_from(["adapter.safetensors", "adapter.json", "json-value"]))
def test_damaged_adapter_files_raise_only_weights_error(adapter: Files, data: st.DataObject, target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights, text = adapter["weights"], adapter["json"].encode()
        if target == "adapter.safetensors":
            weights = damage_bytes(data, weights, adapter["header"] + 16)
        elif target == "adapter.json":
            text = damage_bytes(data, text, len(text))
        else:  # valid JSON with the wrong shape: another top-level value, or one key's value replaced
            cfg = json.loads(text)
            key = data.draw(st.sampled_from([None, *cfg]), label="key")
            value = data.draw(JSON, label="value")
            text = json.dumps(value if key is None else {**cfg, key: value}).encode()
        (folder / "adapter.safetensors").write_bytes(weights)
        (folder / "adapter.json").write_bytes(text)
        try:
            load_adapter(adapter["model"], folder)
        except WeightsError as exc:
            assert str(folder) in str(exc) and "\n" not in str(exc)
        else:  # accepted: then the model holds exactly the saved tensors (a damage that changes none)
            saved = safetensors_load(adapter["weights"])
            state = adapter["model"].trainable_state_dict()
            assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_rebuilding_from_a_damaged_adapter_json_raises_only_weights_error(adapter: Files, data: st.DataObject) -> None:
    cfg = json.loads(adapter["json"])
    key = data.draw(st.sampled_from(["tasks", "task_channels", "backbone", "method", "img_size", "hparams"]))
    value = data.draw(JSON | st.just({"bottleneck": -1}) | st.just(["semseg", "nope"]), label="value")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "adapter.safetensors").write_bytes(adapter["weights"])
        (folder / "adapter.json").write_text(json.dumps({**cfg, key: value}))
        try:
            model_from_adapter(folder)
        except WeightsError as exc:
            assert str(folder) in str(exc) and "\n" not in str(exc)


# Per layout: (folder, extension, kind of content) of every file a sample has.
FILES = {
    "pascal": [("JPEGImages", ".jpg", "image"), ("semseg/pascal-context", ".png", "labels"),
               ("human_parts", ".mat", "mat"), ("sal_distill", ".png", "labels"), ("normals_distill", ".png", "rgb"),
               ("pascal-context/trainval", ".mat", "mat")],
    "nyud": [("images", ".jpg", "image"), ("segmentation", ".png", "labels"), ("depth", ".npy", "npy"),
             ("normals", ".npy", "npy"), ("edge", ".npy", "npy")],
}
DATASET = {"pascal": (PascalContextMT, ["semseg", "human_parts", "sal", "normals", "edge"]),
           "nyud": (NYUDv2MT, ["semseg", "depth", "normals", "edge"])}


def random_content(data: st.DataObject, kind: str, path: Path) -> None:
    """Well-formed files with random sizes, label values and dtypes (a label map is usually 32 x 32, like its image)."""
    side = st.sampled_from([32, 32, 32, 31, 5, 40])
    h, w = data.draw(side, label="h"), data.draw(side, label="w")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    if kind in ("labels", "image"):  # class ids mostly in range, sometimes not, plus the ignore value
        top = data.draw(st.sampled_from([2, 21, 41, 256]), label="top")
        arr = np.where(rng.random((h, w)) < 0.1, 255, rng.integers(0, top, (h, w))).astype(np.uint8)
        if data.draw(st.booleans(), label="rgb"):
            arr = np.stack([arr] * 3, axis=2)
        Image.fromarray(arr).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    elif kind == "rgb":
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    elif kind == "mat":
        dtype = data.draw(st.sampled_from(["uint8", "uint16", "int32", "float64"]), label="dtype")
        scipy.io.savemat(path, {"LabelMap": rng.integers(-3, 500, (h, w)).astype(dtype)})
    else:
        dtype = data.draw(st.sampled_from(["float32", "float64", "uint8", "bool", "int64", "U1", "complex64"]))
        shape = data.draw(st.sampled_from([(h, w), (h, w, 3), (h,), (h, w, 2)]), label="shape")
        arr = rng.normal(size=shape) * 3
        arr = arr.astype(str) if dtype == "U1" else arr.astype(dtype)
        if data.draw(st.booleans(), label="nan") and arr.dtype.kind == "f":
            arr.flat[0] = np.nan
        np.save(path, arr)


@FUZZ
@given(data=st.data(), layout=st.sampled_from(["pascal", "nyud"]))
def test_damaged_dataset_files_raise_only_data_error(datasets: dict, data: st.DataObject, layout: str) -> None:
    root = datasets[layout]
    folder, ext, kind = data.draw(st.sampled_from(FILES[layout]), label="file")
    split = "ImageSets/Context" if layout == "pascal" else "gt_sets"
    ids = (root / split / "train.txt").read_text().split()
    index = data.draw(st.integers(0, len(ids) - 1), label="index")
    path = root / folder / f"{ids[index]}{ext}"
    original = path.read_bytes()
    try:
        if data.draw(st.booleans(), label="well-formed"):
            random_content(data, kind, path)
        else:
            path.write_bytes(damage_bytes(data, original, 256))
        cls, tasks = DATASET[layout]
        size = data.draw(st.integers(8, 40), label="size")
        dataset = cls(root, "train", tasks, transform=build_transform(train=True, size=size, seed=index))
        try:
            sample = dataset[index]
        except DataError as exc:
            assert str(root) in str(exc) and "\n" not in str(exc), exc
        else:  # whatever loaded satisfies the dataset contract
            assert sample["image"].shape == (3, size, size)
            assert (set(sample["semseg"].unique().tolist())
                    <= set(range(dataset.task_channels.get("semseg", 21))) | {255})
            assert torch.isfinite(sample["normals"]).all()
    finally:
        path.write_bytes(original)


# ------------------------------------------------------------------------------------------ 6. CLI errors


def test_bad_input_gives_one_line_errors(base_run: dict, datasets: dict, tmp_path: Path, capsys) -> None:
    tiny = ["--set", "model.hparams={bottleneck: 16}", "--set", "data.size=32", "--set", "train.batch_size=2",
            "--no-progress"]
    run = copy_run(base_run["run"], tmp_path / "run", checkpoints=False)
    other = copy_run(base_run["run"], tmp_path / "other", checkpoints=False)
    cfg = json.loads((other / "adapter.json").read_text())
    (other / "adapter.json").write_text(json.dumps({**cfg, "tasks": ["semseg"]}))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (tmp_path / "a_file").write_text("")
    ids = (datasets["pascal"] / "ImageSets/Context/train.txt").read_text().split()
    partial = copy_run(datasets["pascal"], tmp_path / "partial")
    (partial / "sal_distill" / f"{ids[1]}.png").unlink()
    labels = copy_run(datasets["pascal"], tmp_path / "labels")
    for i in ids:
        Image.fromarray(np.full((32, 32), 30, np.uint8)).save(labels / "semseg/pascal-context" / f"{i}.png")
    mat = copy_run(datasets["pascal"], tmp_path / "mat")
    for i in ids:
        (mat / "human_parts" / f"{i}.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    pascal = ["train", *tiny, "--set", "data.name=pascal", "--set", "tasks=[semseg,human_parts,sal]", "--set"]
    cases = [
        (pascal + ["data.root=/nonexistent", "--out", str(tmp_path / "x1")],
         "vmt train: error: /nonexistent: PascalContextMT root not found; expected a folder with JPEGImages/, "),
        (pascal + [f"data.root={partial}", "--out", str(tmp_path / "x2")],
         f"{partial / 'sal_distill' / ids[1]}.png: file not found (id '{ids[1]}' listed in "),
        (pascal + [f"data.root={labels}", "--out", str(tmp_path / "x3")],
         "semseg value 30 out of range (expected 0..20 or 255)"),
        (pascal + [f"data.root={mat}", "--out", str(tmp_path / "x4")], ".mat: cannot read human parts ("),
        (["train", *tiny, "--set", "tasks=[semseg,depht]", "--out", str(tmp_path / "x5")],
         "vmt train: error: unknown task 'depht'; choose from semseg, human_parts, sal, normals, depth, edge"),
        (["train", *tiny, "--set", "data.name=nyud", "--set", f"data.root={datasets['nyud']}", "--set", "tasks=[sal]",
          "--out", str(tmp_path / "x6")],
         "dataset 'nyud' does not provide sal; it provides semseg, depth, normals, edge"),
        (["train", *tiny, "--set", "model.hparams.botleneck=8", "--out", str(tmp_path / "x7")],
         "vmt train: error: unknown config key 'model.hparams.botleneck' (did you mean 'bottleneck'?)"),
        (["train", *tiny, "--set", "model.backbon=swin_tiny", "--out", str(tmp_path / "x10")],
         "vmt train: error: unknown config key 'model.backbon' (did you mean 'backbone'?)"),
        (["train", *tiny, "--set", "model.hparams={pretrained: x.pth, bottleneck: 8}", "--out", str(tmp_path / "x9")],
         "vmt train: error: unknown config key 'model.hparams.pretrained'"),
        (["train", "--resume", "--out", str(tmp_path / "x8")], f"--resume: {tmp_path / 'x8'} does not exist"),
        (["eval", "--run", str(other)],
         f"vmt eval: error: adapter {other} does not fit this model (tasks: file has ['semseg'], "
         "model has ['semseg', 'sal'])"),
        (["eval", "--run", str(tmp_path / "nowhere")], "is not a run directory (no config.yaml)"),
        (["predict", "--run", str(run), str(tmp_path / "nope.png"), "--out", str(tmp_path / "p")],
         f"vmt predict: error: image not found: {tmp_path / 'nope.png'}"),
        (["predict", "--run", str(run), str(broken), "--out", str(tmp_path / "p")], f"cannot read image {broken}: "),
        (["predict", "--run", str(run), str(broken), "--out", str(tmp_path / "a_file")], "File exists"),
    ]
    for argv, expected in cases:
        err = one_line_error(capsys, main(argv))
        assert expected in err, (argv, err)
    # --debug shows the traceback instead
    with pytest.raises(ConfigError, match="unknown task 'depht'"):
        main(["--debug", *cases[4][0]])


def test_cli_process_prints_one_line_without_traceback(tmp_path: Path) -> None:
    """The real process: exit status 2 and exactly one line on stderr (``--debug`` is checked in-process above)."""
    proc = subprocess.run([sys.executable, "-m", "vmt_adapter.cli", "train", "--set", "data.name=pascal", "--set",
                           "data.root=/nonexistent", "--set", "model.hparams={bottleneck: 16}",
                           "--set", "data.size=32", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("vmt train: error: /nonexistent: PascalContextMT root not found; expected a folder")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_rules_name_the_key_and_allow_harmless_changes(base_run: dict, tmp_path: Path, capsys) -> None:
    """Keys that change the result are refused by name; workers, logging, evaluation and paths may change."""
    run = copy_run(base_run["run"], tmp_path / "run")
    for name in ("adapter.safetensors", "adapter.json", "eval.json"):
        (run / name).unlink()
    code = main(["train", "--resume", "--out", str(run), "--set", "model.hparams={bottleneck: 8}"])
    assert "differs from the checkpoint's in model.hparams " in one_line_error(capsys, code)
    code = main(["train", "--resume", "--out", str(run), "--steps", "4"])
    assert f"train.steps=4 is below the checkpoint's step {STEPS}" in one_line_error(capsys, code)
    from vmt_adapter.engine.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(run)  # as written before these keys existed: they ran at today's defaults
    del state["config"]["data"]["emptied"], state["config"]["train"]["decay_position_tables"]
    del state["config"]["model"]["backbone_train_mode"]
    save_checkpoint(run, state)
    assert main(["train", "--resume", "--out", str(run), "--no-progress", "--set", "data.workers=1",
                 "--set", "train.log_every=3", "--set", "eval.batch_size=2"]) == 0
    assert same_adapter(run, base_run["run"])


def test_resume_under_another_world_size_is_refused(base_run: dict, tmp_path: Path) -> None:
    from vmt_adapter.engine import checkpoint
    from vmt_adapter.engine.config import load_config
    from vmt_adapter.engine.train import Trainer

    run = copy_run(base_run["run"], tmp_path / "run")
    state = checkpoint.load_checkpoint(run)
    checkpoint.save_checkpoint(run, state | {"world_size": 2})  # as written by a 2-process run
    (run / "eval.json").unlink()
    with pytest.raises(CheckpointError, match=r"written by 2 process\(es\), this is 1; the global batch would change"):
        Trainer(load_config(run / "config.yaml"), run, resume=True, progress=False).restore()


def test_a_torn_last_log_line_is_dropped_on_resume(base_run: dict, tmp_path: Path) -> None:
    run = copy_run(base_run["run"], tmp_path / "run")
    for name in ("adapter.safetensors", "adapter.json", "eval.json"):
        (run / name).unlink()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "loss": 1.2')  # killed in the middle of a write
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert losses(run) == losses(base_run["run"])


def test_non_finite_loss_before_any_checkpoint_says_so(base_run: dict, tmp_path: Path, capsys) -> None:
    code = main(["train", "--config", str(base_run["config"]), "--out", str(tmp_path / "nan"), "--no-progress",
                 "--set", "train.lr=1e30", "--set", "train.ckpt_every=100", "--set", "train.steps=8"])
    err = one_line_error(capsys, code)
    assert "non-finite loss" in err and "no checkpoint had been written yet" in err


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path: Path) -> None:
    import errno

    from vmt_adapter.errors import WriteError
    from vmt_adapter.fileio import atomic_write

    target = tmp_path / "eval.json"
    target.write_text("previous")

    def full(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError, match=f"cannot write {target}: No space left on device"):
        atomic_write(target, full)
    assert target.read_text() == "previous" and list(tmp_path.iterdir()) == [target]

    def full_safetensors(tmp: str) -> None:  # safetensors reports the OS error inside its own exception type
        from safetensors import SafetensorError

        Path(tmp).write_bytes(b"half")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull,\n'
                              'message: "No space left on device" })')

    with pytest.raises(WriteError, match=re.escape(f"cannot write {target}: Error while serializing: ") +
                       ".*No space left on device.*previous version, if any, is kept"):
        atomic_write(target, full_safetensors)
    assert target.read_text() == "previous" and list(tmp_path.iterdir()) == [target]


def test_adapter_weights_follow_the_umask(base_run: dict) -> None:
    modes = {name: (base_run["run"] / name).stat().st_mode & 0o777 for name in ("adapter.safetensors", "eval.json")}
    assert modes["adapter.safetensors"] == modes["eval.json"] == 0o666 & ~_current_umask()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("argv,why", [
    (["params", "--method", "vmtt"], "--method 'vmtt': choose from"),
    (["bench", "--size", "33"], "--size must be a multiple of 32 between 32 and 4096, got 33"),
    (["bench", "--size", "0"], "--size must be a multiple of 32 between 32 and 4096, got 0"),
    (["data", "check", "--root", ".", "--sample", "0"], "--sample must be at least 1 (or use --deep), got 0"),
    (["data", "check", "--root", ".", "--sample", "-1"], "--sample must be at least 1 (or use --deep), got -1"),
    (["train", "--config", "synth-vmt", "--set", "model.drop_path=2", "--out", "x"],
     "'model.drop_path' must be a probability in [0, 1)"),
    (["train", "--config", "synth-vmt", "--set", "model.drop_path=.nan", "--out", "x"],
     "config key 'model.drop_path' must be a finite number, got nan"),
    (["train", "--config", "synth-vmt", "--set", "train.loss_weights={semseg: abc}", "--out", "x"],
     "'train.loss_weights' must be a mapping of task names to finite non-negative numbers"),
    (["train", "--config", "synth-vmt", "--set", "train.loss_weights={semseg: -1}", "--out", "x"],
     "'train.loss_weights' must be a mapping of task names to finite non-negative numbers"),
    (["train", "--config", "synth-vmt", "--set", "eval.reference=nosuch", "--out", "x"],
     "reference 'nosuch': neither a built-in"),
    (["train", "--config", "synth-vmt", "--set", "train.lr=.inf", "--out", "x"],
     "config key 'train.lr' must be a finite number, got inf"),  # failed only at the second step
    (["train", "--config", "synth-vmt", "--set", "train.lr=1e400", "--out", "x"],
     "config key 'train.lr' must be a finite number, got inf"),
    (["train", "--config", "synth-vmt", "--set", "train.grad_clip=.nan", "--out", "x"],
     "config key 'train.grad_clip' must be a finite number, got nan"),
])
def test_bad_values_are_one_line_errors_before_any_work(argv: list[str], why: str, tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, main(argv))
    assert why in err
    assert not (tmp_path / "x" / "metrics.jsonl").exists()  # training refused before its first step


def test_a_full_disk_while_exporting_or_predicting_names_what_was_being_written(base_run: dict, tmp_path: Path,
                                                                                monkeypatch, capsys) -> None:
    """PIL's save on a full disk raises an OSError that names no file: the one-line error must name it."""
    import errno

    from PIL import Image as PILImage

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(PILImage.Image, "save", full)
    code = main(["data", "export-synth", "--out", str(tmp_path / "ds"), "--num", "2", "--size", "32"])
    err = capsys.readouterr().err  # the progress bar shares stderr: the error is its last line
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"vmt data: error: cannot write sample synth_train_000000 under "
                                            f"{tmp_path / 'ds'}: No space left on device")
    picture = tmp_path / "a.png"
    monkeypatch.undo()
    PILImage.new("RGB", (40, 30)).save(picture)
    monkeypatch.setattr(PILImage.Image, "save", full)
    code = main(["predict", "--run", str(base_run["run"]), str(picture), "--out", str(tmp_path / "p")])
    err = one_line_error(capsys, code)
    assert f"cannot write the predictions of {picture} in {tmp_path / 'p'}: No space left on device" in err


def test_an_allocation_beyond_memory_is_one_line(capsys) -> None:
    """Sizes inside the allowed ranges can still exceed the machine: a 10^9-image bench batch asks the CPU
    allocator for 3 x 32 x 32 x 4 x 10^9 bytes = 11,444 GiB, and the real allocator error becomes one line."""
    code = main(["bench", "--batch", "1000000000", "--size", "32", "--tasks", "1", "--methods", "decoder-only"])
    err = one_line_error(capsys, code)
    assert "out of memory (an allocation of 11,444.1 GiB failed)" in err and "batch size" in err


def test_evaluating_a_run_on_a_dataset_without_its_tasks_names_them(base_run: dict, tmp_path: Path, capsys) -> None:
    """A SynthScenes run (semseg, sal) evaluated with data.name=nyud: NYUD-v2 has no saliency; the refusal
    names it (it used to surface as adapter tensors 'of wrong shape')."""
    code = main(["eval", "--run", str(base_run["run"]), "--set", "data.name=nyud", "--set", f"data.root={tmp_path}"])
    err = one_line_error(capsys, code)
    assert "dataset 'nyud' does not provide sal; it provides semseg, depth, normals, edge" in err, err
