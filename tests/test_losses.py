"""Losses against hand-computed values on tiny tensors, and the all-ignore contract."""

from __future__ import annotations

import math

import pytest
import torch

from vmt_adapter.engine.losses import MultiTaskLoss
from vmt_adapter.errors import ConfigError
from vmt_adapter.kinds import KINDS
from vmt_adapter.tasks import TASKS

LN2 = math.log(2)


def _binary_target() -> torch.Tensor:
    return torch.tensor([[[1, 0], [0, 255]]])  # 1 positive, 2 negatives, 1 ignored


def test_cross_entropy_ignores_255() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0), 5.0]], [[0.0, 0.0, -5.0]]]])  # (1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 255]]])
    expected = (LN2 - math.log(0.75)) / 2
    assert KINDS["classes"].loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_bce_weights_positives_by_negative_fraction() -> None:
    # zero logits: every pixel costs ln 2; w = 2/3 -> (2/3 * ln2 + 1/3 * 2 ln2) / 3 valid pixels
    loss = KINDS["binary"].loss(torch.zeros(1, 1, 2, 2), _binary_target())
    assert loss.item() == pytest.approx(4 / 9 * LN2, rel=1e-6)


def test_edge_bce_uses_fixed_positive_weight() -> None:
    loss = KINDS["edge"].loss(torch.zeros(1, 1, 2, 2), _binary_target())
    assert loss.item() == pytest.approx((0.95 * LN2 + 0.05 * 2 * LN2) / 3, rel=1e-6)


def test_normals_l1_on_normalised_prediction_over_valid_pixels() -> None:
    pred = torch.tensor([[2.0, 7.0], [0.0, 7.0], [0.0, 7.0]]).view(1, 3, 1, 2)  # pixel 0: (2,0,0) -> (1,0,0)
    target = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]).view(1, 3, 1, 2)  # pixel 1 ignored (zero)
    assert KINDS["normals"].loss(pred, target).item() == pytest.approx(2 / 3, rel=1e-6)


def test_depth_l1_over_positive_targets() -> None:
    pred = torch.tensor([1.0, 5.0, 4.0]).view(1, 1, 1, 3)
    target = torch.tensor([2.0, 0.0, 4.5]).view(1, 1, 1, 3)
    assert KINDS["depth"].loss(pred, target).item() == pytest.approx(0.75, rel=1e-6)


def _outputs(requires_grad: bool, zero: bool = False) -> dict[str, torch.Tensor]:
    make = torch.zeros if zero else torch.randn
    shapes = {"semseg": 21, "human_parts": 7, "sal": 1, "normals": 3, "depth": 1, "edge": 1, "coarse_shape": 4}
    return {name: make(2, c, 4, 4, requires_grad=requires_grad) for name, c in shapes.items()}


def _ignored_batch() -> dict[str, torch.Tensor]:
    ignore = torch.full((2, 4, 4), 255)
    return {
        "semseg": ignore,
        "human_parts": ignore,
        "sal": ignore,
        "edge": ignore,
        "coarse_shape": ignore,
        "normals": torch.zeros(2, 3, 4, 4),
        "depth": torch.zeros(2, 1, 4, 4),
    }


def test_all_ignore_batch_gives_zero_with_finite_gradients() -> None:
    outputs = _outputs(requires_grad=True)
    total, losses = MultiTaskLoss(list(TASKS.values()))(outputs, _ignored_batch())
    assert total.item() == 0.0 and all(loss.item() == 0.0 for loss in losses.values())
    total.backward()
    for out in outputs.values():
        assert out.grad is not None and torch.isfinite(out.grad).all() and (out.grad == 0).all()


def test_zero_normal_prediction_has_finite_gradient() -> None:
    pred = torch.zeros(1, 3, 2, 2, requires_grad=True)
    target = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    KINDS["normals"].loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


def test_multi_task_loss_weights_and_overrides() -> None:
    specs = [TASKS["semseg"], TASKS["sal"], TASKS["depth"]]
    outputs = _outputs(requires_grad=False)
    batch = {
        "semseg": torch.randint(0, 21, (2, 4, 4)),
        "sal": torch.randint(0, 2, (2, 4, 4)),
        "depth": torch.rand(2, 1, 4, 4) + 0.1,
    }
    total, losses = MultiTaskLoss(specs)(outputs, batch)
    assert set(losses) == {"semseg", "sal", "depth"}
    expected = sum(spec.loss_weight * losses[spec.name] for spec in specs)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total, _ = MultiTaskLoss(specs, {"sal": 0.0})(outputs, batch)
    assert total.item() == pytest.approx((losses["semseg"] + losses["depth"]).item(), rel=1e-6)


@pytest.mark.parametrize("weights", [{"normals": 1.0}, {"sal": -1.0}])
def test_multi_task_loss_rejects_bad_weights(weights: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        MultiTaskLoss([TASKS["semseg"], TASKS["sal"]], weights)
