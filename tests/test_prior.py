"""The prior row: the best constant prediction per task, checked against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from vmt_adapter.engine.config import load_config
from vmt_adapter.engine.prior import constant_prior, prior_result
from vmt_adapter.tasks import TASKS, resolve_tasks


def test_majority_label_per_position() -> None:
    # Three 1 x 2 label maps: position 0 sees 0, 0, 1 (majority 0), position 1 sees 1, 2, 2 (majority 2).
    # Predicting [0, 2] everywhere: IoU_0 = 2 / 3 (one false positive), IoU_1 = 0, IoU_2 = 2 / 3.
    (spec,) = resolve_tasks(["semseg"], {"semseg": 3})
    batch = {"semseg": torch.tensor([[[0, 1]], [[0, 2]], [[1, 2]]])}
    details = constant_prior([spec], [batch])["semseg"]
    assert details["mIoU"] == pytest.approx(100 * (2 / 3 + 0 + 2 / 3) / 3)


def test_ignored_pixels_do_not_vote() -> None:
    (spec,) = resolve_tasks(["semseg"], {"semseg": 3})
    batch = {"semseg": torch.tensor([[[255, 1]], [[2, 1]], [[255, 1]]])}  # position 0: only one vote, for 2
    details = constant_prior([spec], [batch])["semseg"]
    assert details["pixel_acc"] == pytest.approx(100.0)


def test_mean_normal_per_position() -> None:
    # Two images, one pixel: normals +z and +x; the mean normal (1, 0, 1) / sqrt 2 is 45 degrees from both.
    batch = {"normals": torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]).view(2, 3, 1, 1)}
    details = constant_prior([TASKS["normals"]], [batch])["normals"]
    assert details["mean"] == pytest.approx(45.0, abs=0.02)


def test_saliency_prior_is_the_positive_frequency() -> None:
    # Position frequencies 1.0 and 0.5. Whichever side of 0.5 a threshold falls, one image is matched
    # exactly (IoU 1) and the other half-covered (IoU 1/2): mean IoU 0.75 at every threshold.
    batch = {"sal": torch.tensor([[[1, 0]], [[1, 1]]])}
    details = constant_prior([TASKS["sal"]], [batch])["sal"]
    assert details["mIoU"] == pytest.approx(75.0)


def test_prior_row_of_the_demo_config_is_a_floor_row() -> None:
    cfg = load_config(None, ["data.size=32", "data.num_val=6", "data.cache_dir="])
    row = prior_result(cfg)
    assert row["name"] == "prior" and row["params"]["trainable"] == 0
    assert set(row["metrics"]) == {"semseg", "human_parts", "sal", "normals"}
    assert all(math.isfinite(v) for v in row["metrics"].values())
