"""``vmt bench``: the output format on a tiny run (timings themselves are benchmarks, not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vmt_adapter.cli import main
from vmt_adapter.experiments.speed import FROZEN, bench_tasks, benchmark_names

NUMBERS = ("fwd_ms", "peak_mem_mb", "decoders_fwd_ms", "train_step_ms", "img_per_s_train", "img_per_s_infer")


def test_json_rows_and_plot(tmp_path, capsys) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--backbone", "swin_nano", "--size", "64", "--batch", "1", "--tasks", "1,2",
            "--methods", "vmt,frozen", "--repeats", "1", "--warmup", "0", "--device", "cpu",
            "--json", str(out), "--plot", str(png)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    assert [(r["method"], r["tasks"]) for r in rows] == [("vmt", 1), ("vmt", 2), (FROZEN, 1), (FROZEN, 2)]
    for r in rows:
        assert r["device"] == "cpu" and (r["backbone"], r["size"], r["batch"]) == ("swin_nano", 64, 1)
        for field in NUMBERS:
            assert isinstance(r[field], float) and r[field] > 0, field
        assert isinstance(r["fwd_vs_frozen"], float)
    vmt, frozen = rows[:2], rows[2:]
    assert all(isinstance(r["fwd_bwd_ms"], float) and r["fwd_bwd_ms"] > 0 for r in vmt)
    assert all(r["fwd_bwd_ms"] is None and r["fwd_bwd_vs_min_t"] is None for r in frozen)
    # The ratio column against the measured times, derived here rather than read back.
    assert vmt[1]["fwd_bwd_vs_min_t"] == pytest.approx(vmt[1]["fwd_bwd_ms"] / vmt[0]["fwd_bwd_ms"])
    assert vmt[1]["fwd_vs_frozen"] == pytest.approx(vmt[1]["fwd_ms"] / frozen[1]["fwd_ms"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "fwd+bwd ms" in table and table.count("\nvmt ") == 2


def test_task_sets_beyond_six_are_unique() -> None:
    specs = bench_tasks(8)
    assert len({s.name for s in specs}) == 8
    assert [s.name for s in bench_tasks(2)] == ["semseg", "human_parts"]
    assert FROZEN in benchmark_names() and "vmt" in benchmark_names()


@pytest.mark.parametrize("bad", [["--methods", "nope"], ["--tasks", "0"], ["--tasks", "x"]])
def test_bad_arguments_are_refused(bad: list[str], capsys) -> None:
    assert main(["bench", *bad]) == 2
    assert "vmt bench: error:" in capsys.readouterr().err


def test_grad_checkpointing_rows_and_identical_gradients(tmp_path: Path) -> None:
    """``--grad-checkpointing`` adds one-pass rows marked as such; recomputing changes no gradient."""
    out = tmp_path / "bench.json"
    args = ["bench", "--backbone", "swin_nano", "--size", "32", "--batch", "1", "--tasks", "2", "--methods",
            "vmt,lora", "--repeats", "1", "--warmup", "0", "--grad-checkpointing", "--json", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    assert [(r["method"], r["grad_checkpointing"]) for r in rows] == [("vmt", False), ("lora", False), ("vmt", True)]
    from vmt_adapter.errors import ConfigError
    from vmt_adapter.models.factory import create_model
    from vmt_adapter.tasks import resolve_tasks

    with pytest.raises(ConfigError, match="one-pass methods only; 'lora'"):
        create_model("swin_nano", "lora", resolve_tasks("sal"), img_size=32).set_grad_checkpointing(True)
    for backbone in ("swin_nano", "vit_nano"):
        torch.manual_seed(0)
        model = create_model(backbone, "vmt", resolve_tasks("semseg,sal"), img_size=64).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.01 * torch.randn_like(p))
        x = torch.randn(2, 3, 64, 64)
        grads = []
        for enable in (False, True):
            model.zero_grad()
            model.set_grad_checkpointing(enable)
            sum(o.pow(2).mean() for o in model(x).values()).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0]), backbone


def test_recompute_keeps_no_merged_task_stream_for_backward() -> None:
    """With merged taps each of VMT's T task streams passes a patch merging, whose LayerNorm saves its input and
    output for backward; under ``train.grad_checkpointing`` nothing of the streams is kept (outside the recomputed
    parts) and the gradients stay those of the plain step. B = 1, T = 3: a saved (3, h, h, C) tensor is a stack of
    the streams (window batches are squares, the decoders' maps channels-first)."""
    from vmt_adapter.models.factory import create_model
    from vmt_adapter.tasks import resolve_tasks

    torch.manual_seed(0)
    model = create_model("swin_nano", "vmt", resolve_tasks("semseg,sal,normals"), img_size=64, taps="merged")
    x = torch.randn(1, 3, 64, 64)
    grads, stream_saves = [], []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        saved: list[tuple[int, ...]] = []
        stream_saves.append(saved)
        with torch.autograd.graph.saved_tensors_hooks(lambda t, into=saved: into.append(tuple(t.shape)) or t,
                                                      lambda t: t):
            loss = sum(o.pow(2).mean() for o in model(x).values())
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        saved[:] = [s for s in saved if len(s) == 4 and s[0] == 3 and s[1] == s[2] > 1]
    assert stream_saves[0] and not stream_saves[1]
    assert grads[0].keys() == grads[1].keys() and all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


def test_decoder_recompute_keeps_gradients_and_batchnorm_statistics() -> None:
    """In train mode (BatchNorm on batch statistics) with the decoders' fusion recomputed in backward, every
    gradient and every running statistic equals the plain step's: BatchNorm runs once per step either way,
    and the folded taps (no tap norm: VMT hands the decoder factored maps) go through the recompute too."""
    from vmt_adapter.models.factory import create_model
    from vmt_adapter.tasks import resolve_tasks

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for tap_norm in (True, False):
        results = []
        for enable in (False, True):
            torch.manual_seed(0)
            model = create_model("swin_nano", "vmt", resolve_tasks("semseg,sal"), img_size=64, tap_norm=tap_norm)
            model.train().set_grad_checkpointing(enable)
            assert all(d.grad_checkpointing is enable for d in model.decoders.values())
            sum(o.pow(2).mean() for o in model(x).values()).backward()
            results.append(({n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                            {n: b.clone() for n, b in model.decoders.named_buffers()}))
        (g0, b0), (g1, b1) = results
        assert model.method.fold_taps is not tap_norm
        assert g0.keys() == g1.keys() and all(torch.equal(g0[n], g1[n]) for n in g0), tap_norm
        assert all(torch.equal(b0[n], b1[n]) for n in b0) and b0["semseg.head.1.num_batches_tracked"] == 1


def test_unfolded_rows_beside_the_folded_ones(tmp_path: Path) -> None:
    """``--no-tap-norm`` lets VMT fold its up-projection (rows say so); ``--unfolded`` adds the dense form."""
    out = tmp_path / "bench.json"
    args = ["bench", "--backbone", "swin_nano", "--size", "32", "--batch", "1", "--tasks", "2", "--methods",
            "vmt,lora", "--repeats", "1", "--warmup", "0", "--no-tap-norm", "--unfolded", "--json", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    assert [(r["method"], r["fold_taps"], r["unfolded"]) for r in rows] == [
        ("vmt", True, False), ("lora", False, False), ("vmt", False, True)]
    assert all(r["tap_norm"] is False and r["fwd_bwd_ms"] > 0 for r in rows)


def test_per_level_fusion_is_the_same_function() -> None:
    """A 1x1 conv commutes with bilinear upsampling (both linear, one over channels, one over positions), so the
    fusion conv run per level before upsampling equals the public order, in float64 to rounding: outputs and
    every gradient, on plain and on folded (factored) taps. In float32 the two differ only by rounding."""
    from vmt_adapter.errors import ConfigError
    from vmt_adapter.models.factory import create_model
    from vmt_adapter.tasks import resolve_tasks

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for tap_norm in (True, False):
        results = []
        for fusion in ("concat", "per_level"):
            torch.manual_seed(0)
            model = create_model("swin_nano", "vmt", resolve_tasks("semseg,normals"), img_size=64,
                                   tap_norm=tap_norm, decoder_fusion=fusion, bottleneck=8).double().train()
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.add_(0.01 * torch.randn_like(p))
            out = model(x)
            sum(o.square().mean() for o in out.values()).backward()
            results.append(({k: v.detach() for k, v in out.items()},
                            {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
        (o0, g0), (o1, g1) = results
        assert all(torch.allclose(o0[k], o1[k], rtol=1e-10, atol=1e-12) for k in o0), tap_norm
        assert g0.keys() == g1.keys()
        assert all(torch.allclose(g0[n], g1[n], rtol=1e-9, atol=1e-12) for n in g0), tap_norm
    with pytest.raises(ConfigError, match="the segformer head offers concat$"):
        create_model("swin_nano", "vmt", resolve_tasks("sal"), img_size=64, decoder="segformer",
                       decoder_fusion="per_level")


def test_per_level_rows_beside_the_public_order(tmp_path: Path) -> None:
    """``--per-level`` adds each case again with the decoders' per-level fusion, marked in its rows; each row's
    forward is compared with the frozen row of its own fusion."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--backbone", "swin_nano", "--size", "32", "--batch", "1", "--tasks", "1", "--methods",
                 "frozen,vmt", "--repeats", "1", "--warmup", "0", "--per-level", "--json", str(out)]) == 0
    rows = {(r["method"], r["decoder_fusion"]): r for r in json.loads(out.read_text())}
    assert list(rows) == [("frozen", "concat"), ("vmt", "concat"), ("frozen", "per_level"), ("vmt", "per_level")]
    for fusion in ("concat", "per_level"):
        vmt, frozen = rows[("vmt", fusion)], rows[("frozen", fusion)]
        assert vmt["fwd_vs_frozen"] == pytest.approx(vmt["fwd_ms"] / frozen["fwd_ms"])
