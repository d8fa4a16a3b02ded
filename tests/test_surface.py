"""The command surface: vmt predict's files, the eval / report reference rules, an import-free
``vmt --help``, vmt export's progress and named dimensions, the README's torchrun form, published rows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmt_adapter.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.pretrained=", "data.cache_dir=", "data.size=64", "data.num_train=4", "data.num_val=4",
        "model.hparams={bottleneck: 8}", "train.batch_size=2", "eval.batch_size=4"]


def train(out: Path, *extra: str) -> Path:
    sets = [a for item in TINY + list(extra) for a in ("--set", item)]
    assert main(["train", "--config", "synth-vmt", "--steps", "1", "--out", str(out), "--no-progress", *sets]) == 0
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("surface") / "run")


def test_predict_writes_outputs_at_the_input_size_and_label_pngs(run: Path, tmp_path: Path) -> None:
    from vmt_adapter.engine.runs import load_run
    from vmt_adapter.reporting.predict import predict

    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)  # 80 wide, 60 high
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert main(["predict", "--run", str(run), str(tmp_path / "a.png"), "--out", str(tmp_path / "p")]) == 0
    out = tmp_path / "p"
    for task in ("semseg", "human_parts", "sal", "normals"):
        assert Image.open(out / f"a_{task}.png").size == (80, 60), task
    expected = predict(load_run(run, [])[1], rgb)
    for task, classes in (("semseg", 7), ("human_parts", 7)):  # SynthScenes: 7 shape classes, 7 part ids
        labels = Image.open(out / f"a_{task}_labels.png")
        assert labels.mode == "L" and labels.size == (80, 60)
        assert np.array_equal(np.asarray(labels), expected[task]) and np.asarray(labels).max() < classes
    assert not (out / "a_sal_labels.png").exists()
    panel = Image.open(out / "a_panel.png")
    assert panel.height >= 256 + 20 and panel.width >= 5 * 256 * 80 // 60  # five tiles, each at least 256 high
    assert main(["predict", "--run", str(run), str(tmp_path / "a.png"), "--out", str(tmp_path / "q"),
                 "--size", "40"]) == 0
    assert Image.open(tmp_path / "q" / "a_semseg_labels.png").size == (40, 40)


def test_legends_name_the_classes_present_most_frequent_first() -> None:
    from vmt_adapter.data.labels import class_names
    from vmt_adapter.reporting.predict import _legend
    from vmt_adapter.tasks import resolve_tasks

    synth = resolve_tasks("semseg", {"semseg": 7})[0]
    names = class_names("synth", synth)
    assert names == ["background", "sphere", "box", "cylinder", "cone", "ellipsoid", "figure"]
    assert class_names("pascal", resolve_tasks("semseg")[0])[15] == "person"  # VOC's person id
    assert class_names("nyud", synth) == [f"class {i}" for i in range(7)]  # NYUD has 40: numbered instead
    from vmt_adapter.kinds import KINDS

    legend = _legend(KINDS["classes"], np.array([[2, 2, 5], [2, 0, 0]]), names)
    assert [text for _, text in legend] == ["2 box", "0 background", "5 ellipsoid"]


def test_eval_refuses_a_reference_from_another_dataset(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--run", str(run), "--reference", "pascal-swin-t"]) == 2
    err = capsys.readouterr().err
    assert err == ("vmt eval: error: eval.reference 'pascal-swin-t': no dm: measured on synth, "
                   "the reference on pascal\n")
    assert not (run / "eval-val.json").exists()
    assert main(["eval", "--run", str(run), "--reference", str(run)]) == 0  # its own run: same dataset
    assert json.loads((run / "eval-val.json").read_text())["dm"] == 0.0  # against itself, every term is 0


def test_report_takes_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "st-run"
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({"dataset": "synth", "metrics": {"semseg": 50.0, "sal": 40.0}}))
    assert main(["report", str(folder), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "st-run" and row["metrics"] == {"semseg": 50.0, "sal": 40.0}


def test_published_vmt_rows_give_their_stated_dm_against_their_reference_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(ROOT / "docs" / "published" / f"{m}.json") for m in ("vmt", "vmt-lite")]
    assert main(["report", *files, "--reference", "pascal-swin-t", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["dm"], r["metrics"]) for r in rows] == [("VMT-Adapter (published)", 3.96, {}),
                                                                  ("VMT-Adapter-Lite (published)", 1.34, {})]
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"metrics": {"semseg": 60.0}}))
    assert main(["report", *files, "--reference", str(ref), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["dm"] is None and r["note"] == "no dm: published against pascal-swin-t only" for r in rows)
    assert [json.loads(Path(f).read_text())["adapter"] for f in files] == [1_130_000, 400_000]


def test_help_and_version_do_not_import_torch() -> None:
    code = ("import sys\nfrom vmt_adapter.cli import main\nfor argv in (['--version'], ['--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as exc:\n        assert exc.code == 0\n"
            "print(sorted(m for m in ('torch', 'timm', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
    assert "vmt-adapter 0.1.0" in done.stdout and all(name in done.stdout for name in COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_help_table_matches_each_command(name: str) -> None:
    import argparse
    import importlib

    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"vmt_adapter.commands.{name}").register(sub)
    assert [a.help for a in sub._choices_actions] == [COMMANDS[name]]


def test_export_says_what_it_does_and_names_the_input_dimensions(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    small = train(tmp_path / "run", "data.size=32", "tasks=[sal]")
    out = tmp_path / "m.onnx"
    assert main(["export", "--run", str(small), "--out", str(out), "--no-check"]) == 0
    err = capsys.readouterr().err
    assert f"vmt export: loading {small}" in err and f"vmt export: exporting to {out}" in err
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]


def test_readme_runs_ddp_through_the_module() -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if "torchrun" in line]
    assert lines and all(re.search(r"torchrun --nproc_per_node \w+ -m vmt_adapter\.cli train", line) for line in lines)


@pytest.mark.parametrize("name", ["adapter.safetensors", "config.yaml", "eval.json", "last.pt", "best/adapter.json"])
def test_export_and_pretrain_never_write_over_a_run_file(run: Path, name: str, capsys) -> None:
    """--out naming one of the run's own files is refused before any work; the run is left byte for byte."""
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for argv in (["export", "--run", str(run), "--out", str(run / name), "--no-check"],
                 ["pretrain", "--run", str(run), "--out", str(run / name), "--steps", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"--out {run / name} is one of the run folder {run}'s own files; write elsewhere"), err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_output_path_is_checked_before_the_work(run: Path, tmp_path: Path, capsys) -> None:
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"keep me")
    cases = {str(existing): "exists; pass --overwrite to replace it",
             str(tmp_path): "is a folder; name the file to write",
             str(tmp_path / "no" / "m.onnx"): f"its folder {tmp_path / 'no'} does not exist"}
    for out, why in cases.items():
        assert main(["export", "--run", str(run), "--out", out, "--no-check"]) == 2
        err = capsys.readouterr().err
        assert why in err and "loading" not in err  # refused before the run was loaded
    assert existing.read_bytes() == b"keep me"
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"keep me too")
    assert main(["pretrain", "--run", str(tmp_path / "p"), "--out", str(weights), "--steps", "1"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and weights.read_bytes() == b"keep me too"


@pytest.mark.parametrize("opset", ["0", "17", "999"])
def test_export_refuses_an_opset_it_cannot_write(run: Path, tmp_path: Path, opset: str, capsys) -> None:
    """Below 18 the exporter used to write 18 while saying the opset asked for; above onnx's newest it fails late."""
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "m.onnx"), "--opset", opset]) == 2
    err = capsys.readouterr().err
    assert f"--opset {opset}: PyTorch's ONNX exporter writes opsets 18 to" in err and "loading" not in err
