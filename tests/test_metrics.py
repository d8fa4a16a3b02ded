"""Meters against hand-computed cases, and the sum-reducible state contract."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist

from vmt_adapter.engine.metrics import build_meters, headline
from vmt_adapter.errors import ConfigError
from vmt_adapter.kinds import KINDS
from vmt_adapter.kinds.binary import SALIENCY_THRESHOLDS
from vmt_adapter.tasks import TASKS


def _one_hot_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def test_classes_confusion_miou_both_conventions() -> None:
    spec = replace(TASKS["semseg"], channels=3)  # class 2 absent from prediction and ground truth
    meter = build_meters([spec])["semseg"]
    meter.update(_one_hot_logits(torch.tensor([[[0, 1], [1, 1]]]), 3), torch.tensor([[[0, 0], [1, 255]]]))
    assert meter.state()[0].tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    out = meter.compute()
    assert out["mIoU"] == pytest.approx(100 / 3)  # the reference convention: class 2 counts as 0
    assert out["mIoU_present"] == pytest.approx(50.0)  # IoU 1/2 and 1/2, class 2 left out
    assert out["pixel_acc"] == pytest.approx(200 / 3)
    # per class: 1 / (2 + 1 - 1) twice; class 2 never seen
    assert [out[f"IoU_{c}"] for c in range(3)] == pytest.approx([50.0, 50.0, math.nan], nan_ok=True)


def test_classes_per_class_iou_by_hand() -> None:
    # truth 0 0 0 1 1 2, guess 0 0 1 1 2 2 -> confusion rows [2 1 0] [0 1 1] [0 0 1]
    meter = build_meters([replace(TASKS["semseg"], channels=3)])["semseg"]
    meter.update(_one_hot_logits(torch.tensor([[[0, 0, 1, 1, 2, 2]]]), 3), torch.tensor([[[0, 0, 0, 1, 1, 2]]]))
    # IoU = TP / (row + column - TP): 2 / (3 + 2 - 2), 1 / (2 + 2 - 1), 1 / (1 + 2 - 1)
    out = meter.compute()
    assert [out[f"IoU_{c}"] for c in range(3)] == pytest.approx([200 / 3, 100 / 3, 50.0])


def test_classes_rejects_out_of_range_label() -> None:
    meter = build_meters([replace(TASKS["semseg"], channels=2)])["semseg"]
    with pytest.raises(ValueError, match="outside"):
        meter.update(torch.zeros(1, 2, 1, 1), torch.tensor([[[5]]]))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_saliency_per_image_thresholds() -> None:
    meter = build_meters([TASKS["sal"]])["sal"]
    # image 1: probs 0.1 (bg), 0.52 (fg), 0.87 (fg), 0.95 (void); image 2: all background, probs 0.32
    logits = torch.tensor([[_logit(0.1), _logit(0.52)], [_logit(0.87), _logit(0.95)]]).view(1, 1, 2, 2)
    meter.update(logits, torch.tensor([[[0, 1], [1, 255]]]))
    meter.update(torch.full((1, 1, 2, 2), _logit(0.32)), torch.zeros(1, 2, 2, dtype=torch.int64))
    assert SALIENCY_THRESHOLDS.tolist() == pytest.approx([0.2 + 0.05 * i for i in range(15)])
    iou, precision, recall, images = meter.state()
    assert images.item() == 2
    # thresholds 0.2..0.3: image 2 predicts everything (IoU 0); 0.35..0.5: both exact (IoU 1, image 2 empty-empty);
    # 0.55..0.85: image 1 keeps only 0.87 (IoU 1/2); 0.9: image 1 empty vs 2 fg (IoU 0)
    assert (iou / 2).tolist() == pytest.approx([0.5] * 3 + [1.0] * 4 + [0.75] * 7 + [0.5])
    assert (precision / 2).tolist() == pytest.approx([0.5] * 14 + [0.0])
    assert (recall / 2).tolist() == pytest.approx([0.5] * 7 + [0.25] * 7 + [0.0])
    assert meter.compute() == pytest.approx({"mIoU": 100.0, "maxF": 50.0})


def test_normals_angles() -> None:
    meter = build_meters([TASKS["normals"]])["normals"]
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    # errors 0, 20, 45, 90 degrees; the last pixel has a zero target and is ignored
    pred = torch.tensor([[3.0, 0, 0], [c, s, 0], [1, 1, 0], [0, 2, 0], [0, 0, 1]]).T.reshape(1, 3, 1, 5)
    target = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 0, 0]]).T.reshape(1, 3, 1, 5)
    meter.update(pred, target)
    out = meter.compute()
    assert out["mean"] == pytest.approx(38.75, abs=1e-4)
    assert out["rmse"] == pytest.approx(math.sqrt((400 + 2025 + 8100) / 4), abs=1e-4)
    assert out["median"] == pytest.approx(20.0, abs=0.01)  # lower middle of 4, 0.01 degree bins
    assert (out["acc_11.25"], out["acc_22.5"], out["acc_30"]) == pytest.approx((25.0, 50.0, 50.0))


def test_depth_rmse_and_log_rmse() -> None:
    meter = build_meters([TASKS["depth"]])["depth"]
    meter.update(torch.tensor([1.0, 3.0, 7.0]).view(1, 1, 1, 3), torch.tensor([2.0, 3.0, 0.0]).view(1, 1, 1, 3))
    assert meter.compute() == pytest.approx({"rmse": math.sqrt(0.5), "log_rmse": math.log(2) / math.sqrt(2)})


def test_edge_loss_proxy_matches_training_loss() -> None:
    meter = build_meters([TASKS["edge"]])["edge"]
    logits, target = torch.randn(2, 1, 3, 3), torch.tensor([[1, 0, 255]] * 3).expand(2, 3, 3)
    meter.update(logits, target)
    assert meter.compute()["loss"] == pytest.approx(KINDS["edge"].loss(logits, target).item(), rel=1e-6)


def _random_batch(spec_name: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    spec = TASKS[spec_name]
    b, h, w = 2, 5, 6
    pred = torch.randn(b, spec.channels, h, w, generator=gen)
    if spec.kind in ("classes", "binary", "edge"):
        target = torch.randint(0, max(spec.channels, 2), (b, h, w), generator=gen)
        target[torch.rand(b, h, w, generator=gen) < 0.2] = 255
    elif spec.kind == "normals":
        target = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=gen), dim=1)
        target[:, :, torch.rand(h, w, generator=gen) < 0.2] = 0
    else:
        target = torch.rand(b, 1, h, w, generator=gen) * 5
        target[target < 1] = 0
        pred = pred.abs() * 3
    return pred, target


@pytest.mark.parametrize("task", list(TASKS))
def test_summed_states_equal_one_meter_over_the_union(task: str) -> None:
    gen = torch.Generator().manual_seed(0)
    batches = [_random_batch(task, gen) for _ in range(4)]
    whole, part1, part2, merged = (build_meters([TASKS[task]])[task] for _ in range(4))
    for i, (pred, target) in enumerate(batches):
        whole.update(pred, target)
        (part1 if i % 2 else part2).update(pred, target)
    merged.load_state([a + b for a, b in zip(part1.state(), part2.state())])
    expected = whole.compute()
    assert all(math.isfinite(v) for v in expected.values())
    assert merged.compute() == pytest.approx(expected, rel=1e-9)


def test_all_ignored_batches_give_nan() -> None:
    ignore = torch.full((2, 3, 3), 255)
    targets = {"normals": torch.zeros(2, 3, 3, 3), "depth": torch.zeros(2, 1, 3, 3)}
    for name, meter in build_meters(list(TASKS.values())).items():
        meter.update(torch.randn(2, TASKS[name].channels, 3, 3), targets.get(name, ignore))
        assert all(math.isnan(v) for v in meter.compute().values()), name


def test_load_state_checks_shapes() -> None:
    meter = build_meters([TASKS["semseg"]])["semseg"]
    with pytest.raises(ValueError, match="shape"):
        meter.load_state([torch.zeros(3, 3, dtype=torch.int64)])


def test_all_reduce_single_process_group(tmp_path) -> None:
    meter = build_meters([TASKS["depth"]])["depth"]
    meter.update(torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0))
    before = meter.compute()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        meter.all_reduce()
    finally:
        dist.destroy_process_group()
    assert meter.compute() == before


def test_headline_and_unknown_kind() -> None:
    assert headline(TASKS["normals"], {"mean": 17.0, "rmse": 25.0}) == 17.0
    with pytest.raises(ConfigError, match="kind"):
        build_meters([replace(TASKS["sal"], kind="nope")])
