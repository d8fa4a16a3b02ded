"""The core model: shapes, zero-init, one backbone pass, what trains, Lite's tied weights, adapter files."""

from __future__ import annotations

import json
import re

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer

from vmt_adapter.cli import main
from vmt_adapter.errors import WeightsError
from vmt_adapter.models.adapters import run_stages
from vmt_adapter.models.adapters.vmt import ParallelMLP
from vmt_adapter.models.backbones import build_backbone
from vmt_adapter.models.backbones.swin import SwinFamily
from vmt_adapter.models.factory import create_model
from vmt_adapter.models.io import load_adapter, model_from_adapter, save_adapter
from vmt_adapter.models.multitask import MultiTaskModel
from vmt_adapter.tasks import resolve_tasks

FOUR = "semseg,human_parts,sal,normals"


def nano(method: str = "vmt", tasks: str = FOUR, **kw) -> MultiTaskModel:
    torch.manual_seed(0)
    return create_model("swin_nano", method, resolve_tasks(tasks), img_size=64, **kw)


def randomise_adapters(model: MultiTaskModel) -> None:
    """Move away from the zero init so that tests see a non-trivial adapter."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if model.method.is_adapter(name):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("tasks", ["normals", FOUR, "semseg,human_parts,sal,normals,depth,edge"])
@pytest.mark.parametrize("method", ["vmt", "vmt-lite"])
def test_output_shapes(method: str, tasks: str, images: torch.Tensor) -> None:
    model = nano(method, tasks)
    out = model(images)
    assert list(out) == tasks.split(",")
    for spec in model.tasks:
        assert out[spec.name].shape == (2, spec.channels, 64, 64)


@pytest.mark.parametrize("method", ["vmt", "vmt-lite"])
def test_zero_init_equals_frozen_backbone(method: str, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    frozen = build_backbone("swin_nano", img_size=64)
    model = nano(method)
    with torch.no_grad():
        ref = frozen.forward_intermediates(images, intermediates_only=True)
        main = [s.permute(0, 3, 1, 2) for s in run_stages(model.backbone, images)]
        taps = model.method.taps(model.backbone, images)
    for r, m, t in zip(ref, main, taps):
        torch.testing.assert_close(m, r, rtol=0, atol=0)
        torch.testing.assert_close(t, r.unsqueeze(0).expand_as(t), rtol=0, atol=0)
    randomise_adapters(model)
    with torch.no_grad():
        moved = next(run_stages(model.backbone, images)).permute(0, 3, 1, 2)
    assert not torch.allclose(moved, ref[0])


def test_tap_streams_follow_the_equations(images: torch.Tensor) -> None:
    """Batched task streams at a tap equal the per-task equations evaluated one task at a time, and the tap maps
    are the shared stream plus them."""
    model = nano()
    randomise_adapters(model)
    block = model.backbone.layers[1].blocks[-1]
    tap: ParallelMLP = block.mlp
    seen = {}
    block.norm2.register_forward_hook(lambda mod, inp, out: seen.update(z=out))  # the MLP's input at the tap
    with torch.no_grad():
        maps = model.method.taps(model.backbone, images)[1]
        shared = list(run_stages(model.backbone, images))[1]
        out, factors = tap.tapped(seen["z"])
        a = tap.adapter
        z, s = seen["z"], a.scale
        u = a.act(a.down(z))
        o = [(u * a.gamma[t] + a.beta[t]) @ a.up_weight.t() + a.up_bias for t in range(4)]
        o_mean = sum(o) / 4
        torch.testing.assert_close(out, tap.base_layer(z) + s * o_mean)
        offsets = factors.offsets()
        for t in range(4):
            torch.testing.assert_close(offsets[t], s * (o[t] - o_mean), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(maps[t], (shared + offsets[t].view(shared.shape)).permute(0, 3, 1, 2))


@pytest.mark.parametrize("tasks", ["sal", FOUR])
def test_one_backbone_pass_whatever_t(tasks: str, images: torch.Tensor) -> None:
    model = nano("vmt", tasks)
    calls: dict[str, int] = {}
    for name, module in model.backbone.named_modules():  # a block counted at its first norm (taps run by parts)
        if name.count(".") == 4 and name.endswith(".norm1") or name == "patch_embed":
            module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    model(images)
    assert len(calls) == 1 + 8  # patch embedding and the 8 blocks of swin_nano
    assert set(calls.values()) == {1}


@pytest.mark.parametrize("method", ["vmt", "vmt-lite", "decoder-only"])
def test_gradients_reach_only_adapters_and_decoders(method: str, images: torch.Tensor) -> None:
    model = nano(method)
    randomise_adapters(model)
    model.train()
    assert not model.backbone.training
    out = model(images)
    sum(o.float().pow(2).mean() for o in out.values()).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # Written out independently of the method's own predicates: its adapter modules and the decoders.
    pattern = re.compile(r"^(decoders\.|backbone\.layers\.\d\.blocks\.\d\.mlp\.adapter\.)")
    expected = {n for n, _ in model.named_parameters() if pattern.match(n)}
    assert got == expected
    assert all(not p.requires_grad for n, p in model.named_parameters() if n not in expected)


def test_lite_up_projection_shares_storage() -> None:
    model = nano("vmt-lite")
    for module in model.modules():
        if isinstance(module, ParallelMLP):
            a = module.adapter
            assert a.up_weight.data_ptr() == a.down.weight.data_ptr()
            assert a.up_weight_own is None
    vmt = nano("vmt")
    a = vmt.backbone.layers[0].blocks[0].mlp.adapter
    assert a.up_weight.data_ptr() != a.down.weight.data_ptr()


def test_adapter_file_round_trip(tmp_path, images: torch.Tensor) -> None:
    base = tmp_path / "base.pth"
    torch.save(build_backbone("swin_nano", img_size=64).state_dict(), base)
    model = nano(pretrained=base)
    randomise_adapters(model)
    model.train()
    model(images)  # move the decoders' BatchNorm statistics away from their init
    model.eval()
    save_adapter(model, tmp_path)
    with torch.no_grad():
        expected = model(images)
        torch.manual_seed(123)  # a fresh model with other random decoders
        rebuilt = model_from_adapter(tmp_path, pretrained=base).eval()
        got = rebuilt(images)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)


def test_adapter_file_mismatch_is_refused(tmp_path) -> None:
    save_adapter(nano("vmt", FOUR), tmp_path)
    with pytest.raises(WeightsError, match="tasks"):
        load_adapter(nano("vmt", "semseg,sal"), tmp_path)
    with pytest.raises(WeightsError, match="method"):
        load_adapter(nano("vmt-lite", FOUR), tmp_path)
    with pytest.raises(WeightsError, match="hparams"):
        load_adapter(nano("vmt", FOUR, bottleneck=16), tmp_path)
    (tmp_path / "adapter.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="fail their checksum"):
        load_adapter(nano("vmt", FOUR), tmp_path)
    cfg = json.loads((tmp_path / "adapter.json").read_text())
    for key in ("weights_sha256", "base_weights"):  # the records that bind a file cannot be switched off
        (tmp_path / "adapter.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != key}))
        with pytest.raises(WeightsError, match=f"lacks key\\(s\\) {key}"):
            load_adapter(nano("vmt", FOUR), tmp_path)
    (tmp_path / "adapter.json").write_text('{"hparams": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(WeightsError, match="is nested too deeply to be an adapter config"):
        load_adapter(nano("vmt", FOUR), tmp_path)
    bad = {"base_weights": "builtin:swin_nano_studio", "weights_sha256": None, "img_size": 10**7,
           "decoder_ratio": 10**6, "task_channels": {"semseg": 10**9}}
    for key, value in bad.items():
        (tmp_path / "adapter.json").write_text(json.dumps(cfg | {key: value}))
        with pytest.raises(WeightsError, match=f"adapter config .*: {key} must"):
            load_adapter(nano("vmt", FOUR), tmp_path)


@pytest.mark.parametrize("fmt", ["timm", "microsoft", "safetensors"])
def test_pretrained_weights_load(tmp_path, fmt: str) -> None:
    torch.manual_seed(5)
    src = build_backbone("swin_nano", img_size=64)
    state = src.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pth")
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"model": state} if fmt == "microsoft" else state, path)
    loaded = build_backbone("swin_nano", pretrained=path, img_size=64)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_pretrained_weights_errors(tmp_path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        build_backbone("swin_nano", pretrained=tmp_path / "nope.pth")
    state = build_backbone("swin_nano", img_size=64).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["layers.0.blocks.0.norm1.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing.*norm1.*1 unexpected.*extra"):
        build_backbone("swin_nano", pretrained=tmp_path / "bad.pth", img_size=64)
    torch.save(build_backbone("swin_nano", img_size=64), tmp_path / "pickled_module.pth")
    with pytest.raises(WeightsError, match="cannot read weights"):
        build_backbone("swin_nano", pretrained=tmp_path / "pickled_module.pth", img_size=64)


def test_swin_tiny_parameter_counts(capsys) -> None:
    import json

    def counts(method: str, tasks: str = FOUR) -> dict:
        assert main(["params", "--backbone", "swin_tiny", "--method", method, "--tasks", tasks, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    vmt, lite = counts("vmt"), counts("vmt-lite")
    # By hand: Swin-T has 12 blocks of widths 2 x 96, 2 x 192, 6 x 384, 2 x 768 (sum 4,416); with k = 128 and
    # T = 4 a block holds W_down d*k + b_down k, W_up d*k + b_up d and 2*T*k task vectors; Lite drops W_up.
    widths, k, tasks = 4416, 128, 4
    assert vmt["adapter"] == 2 * k * widths + 12 * k + widths + 12 * 2 * tasks * k == 1_148_736
    assert lite["adapter"] == k * widths + 12 * k + widths + 12 * 2 * tasks * k == 583_488
    five = counts("vmt", FOUR + ",depth")
    assert five["adapter_task_specific"] - vmt["adapter_task_specific"] == 2 * 128 * 12
    assert five["adapter"] - vmt["adapter"] == 2 * 128 * 12
    assert vmt["trainable"] == vmt["adapter"] + vmt["decoders"] + vmt["other_trainable"]


def test_builtin_weights_load_without_timm_guessing_their_layout(monkeypatch) -> None:
    """The shipped file declares its key layout, so timm's version-dependent filter is never consulted."""
    from vmt_adapter.models import backbones
    from vmt_adapter.models.backbones import swin

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint_filter_fn was called")

    monkeypatch.setattr(swin, "checkpoint_filter_fn", refuse)
    assert backbones.weights_layout("builtin:swin_nano_synth") == "timm-swin/1"
    build_backbone("swin_nano", pretrained="builtin:swin_nano_synth", img_size=64)
    build_backbone("swin_nano", pretrained="builtin:swin_nano_synth", img_size=32)  # smaller windows: tables resized


def _microsoft_layout(state: dict) -> dict:
    """timm 1.x keys -> the official Swin release's: patch merging at the end of stage N (timm: start of N + 1)."""
    import re

    out = {}
    for k, v in state.items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        out[k.replace("head.fc.", "head.")] = v
    return out


def test_official_microsoft_layout_loads(tmp_path) -> None:
    torch.manual_seed(7)
    src = SwinTransformer(**(SwinFamily.variants["swin_nano"] | {"img_size": 64}), num_classes=10)  # with a head
    state = _microsoft_layout(src.state_dict())
    assert "layers.0.downsample.reduction.weight" in state and "head.weight" in state  # the real key names
    torch.save({"model": state}, tmp_path / "ms.pth")
    loaded = build_backbone("swin_nano", pretrained=tmp_path / "ms.pth", img_size=64)  # no head: it is dropped
    for k, v in loaded.state_dict().items():
        if not k.endswith(("relative_position_index", "attn_mask")):
            torch.testing.assert_close(v, src.state_dict()[k])


def test_foreign_weights_files_are_one_line_errors(tmp_path) -> None:
    (tmp_path / "text.pth").write_text("hello, not weights\n")
    with pytest.raises(WeightsError, match="not a PyTorch, safetensors or checkpoint file"):
        build_backbone("swin_nano", pretrained=tmp_path / "text.pth", img_size=64)
    torch.save({"model": torch.zeros(3)}, tmp_path / "wrapped_tensor.pth")
    with pytest.raises(WeightsError, match="holds no mapping of names to tensors"):
        build_backbone("swin_nano", pretrained=tmp_path / "wrapped_tensor.pth", img_size=64)
    torch.save(build_backbone("swin_tiny", img_size=64).state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(WeightsError, match="do not fit this backbone"):
        build_backbone("swin_nano", pretrained=tmp_path / "tiny.pth", img_size=64)


def test_one_mismatch_report_for_weights_adapters_and_checkpoints() -> None:
    """By hand: expected {a (2,), b (3,), c (1,)}; given {a (2,), b (4,), d (1,)}: c missing, d unexpected, b of
    wrong shape; c may be optional (a buffer the file need not hold)."""
    from vmt_adapter.models.backbones.weights import state_mismatch

    expected = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    given = {"a": torch.zeros(2), "b": torch.zeros(4), "d": torch.zeros(1)}
    assert state_mismatch(given, expected) == "1 missing (e.g. c); 1 unexpected (e.g. d); 1 of wrong shape (e.g. b)"
    assert state_mismatch(given, expected, optional=["c"]) == "1 unexpected (e.g. d); 1 of wrong shape (e.g. b)"
    assert state_mismatch({"a": torch.ones(2), "b": torch.ones(3)}, expected, optional=["c"]) is None
