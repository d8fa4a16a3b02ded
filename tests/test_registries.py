"""Every registry read as a contract: each registered decoder and dataset honours it, and a toy method and a
toy decoder added through their registries alone (the test file is the only file touched) work everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import common_backbones

from vmt_adapter.cli import main
from vmt_adapter.data import DATASETS, build_dataset
from vmt_adapter.data.export import LAYOUTS, export_synth
from vmt_adapter.models.adapters import METHODS
from vmt_adapter.models.adapters.base import Method, MethodConfig, register
from vmt_adapter.models.backbones import FAMILIES, build_backbone
from vmt_adapter.models.backbones.base import Tapped
from vmt_adapter.models.decoders import DECODERS, Decoder, MultiScaleDecoder
from vmt_adapter.models.factory import create_model
from vmt_adapter.tasks import TASKS, resolve_tasks

# Raw-to-contract types per task kind (vmt_adapter.tasks): what every dataset item must hold.
CONTRACT = {"classes": (torch.int64, 2), "binary": (torch.int64, 2), "edge": (torch.int64, 2),
            "normals": (torch.float32, 3), "depth": (torch.float32, 3)}


class OneConv(Decoder):
    """A toy decoder: one 1x1 conv on the finest tap, upsampled (registered by the tests below)."""

    def __init__(self, in_channels, out_channels, ratio, tap_norm) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels[0], out_channels, 1)

    def forward(self, feats, size):
        return torch.nn.functional.interpolate(self.conv(feats[0]), size=size, mode="bilinear")


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("tap_norm", [True, False])
def test_every_registered_decoder_honours_the_contract(name: str, tap_norm: bool) -> None:
    """Four maps at strides 4 to 32 (finest first) in, (B, C_task, H, W) at the asked size out; every parameter
    gets a gradient; and it serves a MultiTaskModel by name (model.decoder) through forward and backward."""
    torch.manual_seed(0)
    widths = [8, 16, 32, 64]
    head = DECODERS[name](widths, 5, 1, tap_norm)
    assert isinstance(head, Decoder) and head.fusion == head.FUSIONS[0] and head.accepts_factored in (True, False)
    taps = [torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(widths)]
    out = head(taps, (64, 48))
    assert out.shape == (2, 5, 64, 48) and torch.isfinite(out).all()
    for fusion in head.FUSIONS[1:]:  # another order of operations: the same function
        head.fusion = fusion
        torch.testing.assert_close(head(taps, (64, 48)), out, rtol=1e-4, atol=1e-5)
        head.fusion = head.FUSIONS[0]
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    model = create_model("swin_nano", "vmt", resolve_tasks("semseg,normals"), img_size=64, decoder=name,
                           decoder_ratio=1, tap_norm=tap_norm, bottleneck=8)
    outputs = model(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"semseg": (2, 21, 64, 64), "normals": (2, 3, 64, 64)}
    sum(v.mean() for v in outputs.values()).backward()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_backbone_family_honours_the_contract(family) -> None:
    """``run`` yields one ``Tapped`` per stage, the last one's stream timm's own features (before its final norm);
    ``tap_forward`` with the block's own MLP is the block's forward, bit for bit; ``maps`` gives the declared
    channels at strides 4 to 32."""
    variant = next(b for b, (name, _) in common_backbones().items() if name == family.name)
    torch.manual_seed(0)
    model = build_backbone(variant, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outs = list(family.run(model, x))
        stages = family.stages(model)
        assert len(outs) == len(stages) == len(family.tap_channels(model))
        assert all(isinstance(o, Tapped) and o.extra is None for o in outs)
        torch.testing.assert_close(model.norm(outs[-1].main), model.forward_features(x))
        for stage, out in zip(stages, outs):
            block = stage[-1]
            tokens = torch.randn_like(out.main)
            tapped = family.tap_forward(block, tokens, lambda z, block=block: (block.mlp(z), "extra"))
            assert tapped.extra == "extra" and torch.equal(tapped.main, block(tokens))
        maps = [family.maps(model, o.main, x.shape[-2:], i) for i, o in enumerate(outs)]
        assert [m.shape[1] for m in maps] == family.tap_channels(model)
        assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]  # strides 4 to 32 at 64 px


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_registered_dataset_honours_the_contract(name: str, tmp_path: Path) -> None:
    """Declared attributes, and items in the conventions of vmt_adapter.tasks: an ImageNet-normalised float
    image, one tensor per task of its kind's type and rank, an id; ``raw`` the uint8 image. Datasets read from
    a folder are checked on a SynthScenes export in their layout."""
    cls = DATASETS[name]
    assert cls.NAME == name and cls.PROVIDES and set(cls.PROVIDES) <= set(TASKS)
    assert isinstance(cls.NEEDS_ROOT, bool) and set(cls.task_channels) <= set(cls.PROVIDES)
    assert set(cls.CLASS_NAMES) <= set(cls.PROVIDES)
    root = None
    if cls.NEEDS_ROOT:
        if name not in LAYOUTS:
            pytest.skip(f"no SynthScenes export in the {name} layout to read")
        root = tmp_path / name
        export_synth(root, num=5, size=32, layout=name)
        assert cls.detect(root)
    tasks = [t for t in cls.PROVIDES if t in TASKS and t != "coarse_shape"]
    data = build_dataset(name, root, "train", tasks, 32, train=True, num=2)
    item, raw = data[0], data.raw(0)
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert raw["image"].dtype.name == "uint8" and isinstance(item["id"], str)
    for task in tasks:
        dtype, rank = CONTRACT[TASKS[task].kind]
        assert item[task].dtype == dtype and item[task].dim() == rank and item[task].shape[-2:] == (32, 32), task


def test_a_method_and_a_decoder_added_through_their_registries_alone(capsys) -> None:
    """A toy method (the frozen backbone plus a trained per-task scale of the taps) and a toy decoder (one 1x1
    conv on the finest tap), registered here: they build, train a step, count, and ``vmt params --published``
    still lists the methods with a PASCAL config, without the toy one (it has none)."""

    class ToyConfig(MethodConfig):
        pass

    @register
    class ToyMethod(Method):
        name, config_class = "toy", ToyConfig

        def inject(self, backbone) -> None:
            backbone.toy_scale = torch.nn.Parameter(torch.ones(len(self.task_names)))

        def is_adapter(self, name: str) -> bool:
            return name == "toy_scale"

    DECODERS["toy"] = OneConv
    try:
        model = create_model("swin_nano", "toy", resolve_tasks("sal"), img_size=64, decoder="toy")
        assert {n for n, p in model.named_parameters() if p.requires_grad} == {
            "backbone.toy_scale", "decoders.sal.conv.weight", "decoders.sal.conv.bias"}
        assert model(torch.randn(1, 3, 64, 64))["sal"].shape == (1, 1, 64, 64)
        assert model.parameter_counts()["adapter"] == 1
        assert main(["params", "--published", "--json"]) == 0
        listed = [r["method"] for r in json.loads(capsys.readouterr().out)]
        assert "toy" not in listed and listed == [m for m in METHODS if m != "toy"]
    finally:
        METHODS.pop("toy")
        DECODERS.pop("toy")
    assert isinstance(DECODERS["hrnet"]([8, 16, 32, 64], 1, 1, True), MultiScaleDecoder)


def test_a_task_kind_a_task_a_dataset_and_a_decoder_through_the_registries_only(tmp_path: Path, capsys) -> None:
    """A toy kind (a per-pixel scalar: bilinear resampling, L2 loss, mean-square-error meter, mean prior,
    grey pictures), a task of that kind in the task table, a toy dataset serving it and a toy decoder, all
    registered here: `vmt train` trains and evaluates it, and `vmt predict` draws it."""
    import numpy as np

    from vmt_adapter.data.registry import register_dataset
    from vmt_adapter.kinds import KINDS, register_kind
    from vmt_adapter.kinds.base import Meter, TaskKind, grey, mean, mean_map, mean_stats, ratio, warp
    from vmt_adapter.tasks import TaskSpec

    class SquaredError(Meter):
        def _zeros(self):
            return {"sum": torch.zeros((), dtype=torch.float64), "pixels": torch.zeros((), dtype=torch.int64)}

        def update(self, pred, target):
            self._add(sum=(pred.double() - target.double()).square().sum(), pixels=torch.tensor(target.numel()))

        def compute(self):
            return {"mse": ratio(self._state["sum"], self._state["pixels"])}

    class Scalar(TaskKind):
        name, caption = "toy_scalar", "black 0 .. white 1"

        def resample(self, value, geometry, grid, pad):
            return warp(torch.from_numpy(value.astype(np.float32))[None], grid, "bilinear")

        def loss(self, pred, target):
            return mean((pred - target).square().sum(), torch.tensor(target.numel()))

        def meter(self, spec):
            return SquaredError()

        def prior_stats(self, target, spec):
            return mean_stats(target + 1.0, spec)  # mean_stats counts positive values

        def prior_map(self, stats):
            return mean_map(stats) - 1.0

        def decode(self, output):
            return output[0].numpy()

        def picture(self, decoded):
            return grey(decoded)

        def truth_picture(self, target):
            return grey(target[0].numpy())

        def raw_picture(self, array):
            return grey(array)

    class Toy(torch.utils.data.Dataset):
        NAME, PROVIDES, task_channels, CLASS_NAMES = "toy_scalars", ("brightness",), {}, {}
        NEEDS_ROOT, SPLITS, VERSION, EXPECTED_IDS = False, ("train", "val"), "toy-1", {}

        def __init__(self, transform) -> None:
            self.transform = transform

        @classmethod
        def detect(cls, root):
            return False

        @classmethod
        def build(cls, root, split, tasks, transform, size=None, num=None, cache_dir=None):
            return cls(transform)

        def __len__(self):
            return 8

        def raw(self, i):
            image = np.random.default_rng(i).integers(0, 256, (32, 32, 3)).astype(np.uint8)
            return {"image": image, "brightness": image.mean(-1).astype(np.float32) / 255, "id": f"toy_{i}"}

        def __getitem__(self, i):
            return self.transform(self.raw(i))

    register_kind(Scalar())
    TASKS["brightness"] = TaskSpec("brightness", 1, "toy_scalar", 1.0, "mse", False)
    register_dataset(Toy)
    DECODERS["one_conv"] = OneConv
    try:
        run = tmp_path / "run"
        args = ["train", "--set", "data.name=toy_scalars", "--set", "tasks=[brightness]", "--set", "data.size=32",
                "--set", "model.pretrained=", "--set", "model.decoder=one_conv",
                "--set", "model.hparams={bottleneck: 8}", "--set", "train.batch_size=2", "--set", "eval.batch_size=4",
                "--steps", "2", "--out", str(run), "--no-progress"]
        assert main(args) == 0
        record = json.loads((run / "eval.json").read_text())
        assert record["metrics"]["brightness"] >= 0 and record["dataset_version"] == "toy-1"
        image = tmp_path / "in.png"
        from PIL import Image

        Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(image)
        capsys.readouterr()
        assert main(["predict", "--run", str(run), "--out", str(tmp_path / "pred"), str(image)]) == 0
        assert (tmp_path / "pred" / "in_brightness.png").is_file() and (tmp_path / "pred" / "in_panel.png").is_file()
    finally:
        KINDS.pop("toy_scalar")
        TASKS.pop("brightness")
        DATASETS.pop("toy_scalars")
        DECODERS.pop("one_conv")
