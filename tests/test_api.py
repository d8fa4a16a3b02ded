"""The Python API: from_pretrained's base and mode, preprocess, predict at the image's resolution, the summary."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vmt_adapter
from vmt_adapter.errors import DataError, WeightsError
from vmt_adapter.models.backbones import build_backbone
from vmt_adapter.models.factory import create_model
from vmt_adapter.models.io import save_adapter
from vmt_adapter.models.multitask import MultiTaskModel
from vmt_adapter.tasks import resolve_tasks

TASKS = "semseg,human_parts,sal,normals,depth"  # every decoded kind: classes, binary, normals, depth


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trained(tmp_path: Path, seed: int = 0) -> tuple[MultiTaskModel, Path]:
    """A model on a base weights file, with perturbed trainable weights and moved BatchNorm statistics, saved."""
    torch.manual_seed(seed)
    base = tmp_path / "base.pth"
    torch.save(build_backbone("swin_nano", img_size=32).state_dict(), base)
    model = create_model("swin_nano", "vmt", resolve_tasks(TASKS), pretrained=base, img_size=32, bottleneck=8)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        model.train()(torch.randn(4, 3, 32, 32))  # running statistics away from their initial values
    save_adapter(model.eval(), tmp_path / "adapter")
    return model, base


def test_from_pretrained_uses_the_recorded_base_and_returns_an_eval_model(tmp_path: Path) -> None:
    model, base = trained(tmp_path)
    loaded = vmt_adapter.from_pretrained(tmp_path / "adapter")  # no base given
    assert loaded.base_weights == {"name": str(base), "sha256": sha256(base)}
    assert not loaded.training and not any(m.training for m in loaded.modules())
    x = torch.randn(2, 3, 32, 32)
    stats = {n: b.clone() for n, b in loaded.named_buffers()}
    with torch.no_grad():
        first, second, expected = loaded(x), loaded(x), model.eval()(x)
    assert all(torch.equal(b, stats[n]) for n, b in loaded.named_buffers())
    for task in expected:
        assert torch.equal(first[task], second[task]) and torch.equal(first[task], expected[task]), task


def test_another_base_is_refused_naming_both_hashes_unless_allowed(tmp_path: Path) -> None:
    _, base = trained(tmp_path)
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(build_backbone("swin_nano", img_size=32).state_dict(), other)
    with pytest.raises(WeightsError) as info:
        vmt_adapter.from_pretrained(tmp_path / "adapter", base=other)
    message = str(info.value)
    assert sha256(base)[:12] in message and sha256(other)[:12] in message and "allow_other_base=True" in message
    model = vmt_adapter.from_pretrained(tmp_path / "adapter", base=other, allow_other_base=True)
    assert model.base_weights["sha256"] == sha256(other) and not model.training
    base.unlink()
    with pytest.raises(WeightsError, match=r"trained on base weights '.*base\.pth', which are not here; pass"):
        vmt_adapter.from_pretrained(tmp_path / "adapter")


def test_preprocess_normalises_with_the_imagenet_statistics(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)[None]
    Image.fromarray(rgb).save(tmp_path / "x.png")
    for image in (rgb, Image.fromarray(rgb), tmp_path / "x.png", str(tmp_path / "x.png")):
        x = vmt_adapter.preprocess(image)
        assert x.dtype == torch.float32 and x.shape == (1, 3, 5, 7)
        np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    assert vmt_adapter.preprocess(rgb, size=(10, 14)).shape == (1, 3, 10, 14)
    assert vmt_adapter.preprocess(rgb, size=8).shape == (1, 3, 8, 8)
    with pytest.raises(DataError, match=r"image array must be uint8 \(H, W, 3\), got float64 \(5, 7, 3\)"):
        vmt_adapter.preprocess(rgb / 255.0)


def test_predict_returns_each_kind_at_the_input_resolution(tmp_path: Path) -> None:
    model, _ = trained(tmp_path)
    rgb = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)  # not square, not 32
    model.train()
    stats = {n: b.clone() for n, b in model.named_buffers()}
    out = vmt_adapter.predict(model, rgb)
    assert model.training and all(torch.equal(b, stats[n]) for n, b in model.named_buffers())  # mode kept
    assert set(out) == set(TASKS.split(","))
    for task in ("semseg", "human_parts"):
        assert out[task].shape == (37, 53) and np.issubdtype(out[task].dtype, np.integer)
        assert out[task].min() >= 0 and out[task].max() < {"semseg": 21, "human_parts": 7}[task]
    assert out["sal"].shape == (37, 53) and out["sal"].min() >= 0 and out["sal"].max() <= 1
    assert out["normals"].shape == (37, 53, 3)
    np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=-1), 1.0, atol=1e-5)
    assert out["depth"].shape == (37, 53) and out["depth"].min() >= 0
    # At the network's own size nothing is resized: the class ids are the argmax of the model's logits.
    square = vmt_adapter.predict(model, rgb, size=32)
    with torch.no_grad():
        logits = model.eval()(vmt_adapter.preprocess(rgb, 32))
    assert np.array_equal(square["semseg"], logits["semseg"][0].argmax(0).numpy())
    assert square["normals"].shape == (32, 32, 3)


def test_print_trainable_parameters_counts_like_peft(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = trained(tmp_path)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    vmt_adapter.print_trainable_parameters(model)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"trainable params: {trainable:,} || all params: {total:,} || "
                     f"trainable%: {100 * trainable / total:.4f}")


def test_the_package_lists_its_api_and_ships_py_typed() -> None:
    assert set(vmt_adapter.__all__) >= {"from_pretrained", "preprocess", "predict", "print_trainable_parameters"}
    assert set(dir(vmt_adapter)) == set(vmt_adapter.__all__)
    assert (Path(vmt_adapter.__file__).parent / "py.typed").is_file()


def random_init_adapter(tmp_path: Path, seed: int = 7) -> MultiTaskModel:
    """A model on a randomly initialised backbone drawn from ``seed``, with perturbed trainables, saved."""
    torch.manual_seed(seed)
    model = create_model("swin_nano", "mt-full", resolve_tasks("sal"), img_size=32)  # trains the backbone too
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    save_adapter(model.eval(), tmp_path / "adapter")
    return model


def test_a_random_base_is_drawn_again_from_its_recorded_seed(tmp_path: Path) -> None:
    """The frozen half of a random backbone is not in the file: each load draws it from the recorded seed,
    whatever the caller's generator holds, so two loads give the original model's outputs exactly."""
    import json

    model = random_init_adapter(tmp_path)
    record = json.loads((tmp_path / "adapter" / "adapter.json").read_text())["base_weights"]
    assert record["name"] == "random init" and record["sha256"] is None and record["init_seed"] == 7
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)["sal"]
        torch.randn(1000)  # the caller's stream moves on between loads
        first = vmt_adapter.from_pretrained(tmp_path / "adapter")(images)["sal"]
        second = vmt_adapter.from_pretrained(tmp_path / "adapter")(images)["sal"]
    assert torch.equal(first, expected) and torch.equal(second, expected)


def test_a_random_base_that_cannot_be_drawn_again_is_refused(tmp_path: Path) -> None:
    import json

    random_init_adapter(tmp_path)
    path = tmp_path / "adapter" / "adapter.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps(cfg | {"base_weights": {"name": "random init", "sha256": None}}))  # an older file
    with pytest.raises(WeightsError, match=r"randomly initialised backbone and does not record its seed"):
        vmt_adapter.from_pretrained(tmp_path / "adapter")
    other = cfg["base_weights"] | {"init_seed": 8}  # a seed that does not draw the recorded tensors
    path.write_text(json.dumps(cfg | {"base_weights": other}))
    with pytest.raises(WeightsError, match=r"drawn from seed 8 .*this model's backbone is another \(seed 8"):
        vmt_adapter.from_pretrained(tmp_path / "adapter")


def test_a_float_image_is_read_on_its_own_scale_not_as_black(tmp_path: Path) -> None:
    """A float TIFF of values in [0, 1] (mode F): 0.5 is grey 128 (0.5 x 255 = 127.5, rounded to even)."""
    from vmt_adapter.reporting.predict import load_image

    Image.fromarray(np.full((4, 6), 0.5, dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    rgb = load_image(tmp_path / "f.tif")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8 and (rgb == 128).all()
    Image.fromarray(np.full((4, 6), np.nan, dtype=np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"cannot read image .*nan\.tif: a floating-point image with NaN"):
        load_image(tmp_path / "nan.tif")


def test_extreme_and_broken_images_are_predicted_or_refused_in_one_line(tmp_path: Path) -> None:
    """A 1 x 1 image gives 1 x 1 outputs; a file that is not an image, and a decompression bomb, are refused."""
    from vmt_adapter.reporting.predict import load_image

    model, _ = trained(tmp_path)
    out = vmt_adapter.predict(model, np.full((1, 1, 3), 200, dtype=np.uint8))
    assert out["semseg"].shape == (1, 1) and out["normals"].shape == (1, 1, 3)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read image .*text\.png: cannot identify image file"):
        load_image(tmp_path / "text.png")
    Image.new("L", (20_000, 20_000)).save(tmp_path / "huge.png")  # 400 M pixels, over PIL's bomb limit
    with pytest.raises(DataError, match=r"cannot read image .*huge\.png: Image size \(400000000 pixels\) exceeds"):
        load_image(tmp_path / "huge.png")
