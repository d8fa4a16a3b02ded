"""ONNX export: one graph with an output per task that onnxruntime runs within 1e-4 of PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vmt_adapter.cli import main
from vmt_adapter.models.factory import create_model
from vmt_adapter.reporting.export import check_onnx, export_onnx
from vmt_adapter.tasks import resolve_tasks

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "vmt_adapter" / "configs" / "synth-vmt.yaml"


def test_vmt_run_exports_and_matches_pytorch(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    sets = ["model.pretrained=", "data.cache_dir=", "data.size=32", "data.num_train=4", "data.num_val=3",
            "model.hparams={bottleneck: 8}", "train.batch_size=2", "tasks=[semseg,sal]"]
    args = ["train", "--config", str(CONFIG), "--steps", "1", "--out", str(run), "--no-progress"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(run), "--out", str(out), "--fixed-size", "--latency"]) == 0
    printed = capsys.readouterr().out
    assert "latency per image" in printed and "PyTorch eager" in printed
    assert "opset 18" in printed and "outputs semseg, sal" in printed and "(within 0.0001)" in printed
    import onnx

    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["semseg", "sal"]


def test_a_per_task_baseline_exports_with_a_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("swin_nano", "lora", resolve_tasks("semseg,normals"), img_size=32, rank=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # away from LoRA's zero init, so the updates are exported too
    out = tmp_path / "lora.onnx"
    info = export_onnx(model, out, 32, dynamic_size=False)
    assert info["tasks"] == ["semseg", "normals"] and out.stat().st_size == info["bytes"]
    for batch in (1, 3):
        diffs = check_onnx(out, model, torch.randn(batch, 3, 32, 32))
        assert set(diffs) == {"semseg", "normals"} and max(diffs.values()) <= 1e-4, diffs


def test_export_without_the_extra_names_it(tmp_path: Path, monkeypatch, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    model = create_model("swin_nano", "decoder-only", resolve_tasks("sal"), img_size=32)
    from vmt_adapter.reporting.export import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"needs onnxscript: pip install 'vmt-adapter\[onnx\]'"):
        export_onnx(model, tmp_path / "x.onnx", 32)
    assert not (tmp_path / "x.onnx").exists()
