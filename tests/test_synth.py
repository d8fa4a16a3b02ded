"""SynthScenes: determinism, label conventions, geometry of the ground truth, and the dataset wrapper."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from vmt_adapter.data.synth import (
    PART_IDS,
    SPLITS,
    SYNTH_CLASSES,
    SYNTH_CONTEXT_IDS,
    SynthScenes,
    _make_scene,
    render_sample,
)
from vmt_adapter.errors import ConfigError

SIZE = 64
N = 20


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    return [render_sample(0, i, SIZE) for i in range(N)]


def _camera_rays(seed: int, index: int, size: int) -> np.ndarray:
    """Camera-frame ray directions (unnormalised, z = -1) through the pixel centres."""
    focal = size / (2.0 * _make_scene(seed, index).tan_half_fov)
    c = (np.arange(size) + 0.5 - size / 2.0) / focal
    u, v = np.meshgrid(c, -c)
    return np.stack([u, v, -np.ones_like(u)], axis=-1)


def test_deterministic_and_seed_dependent() -> None:
    a, b = render_sample(3, 7, SIZE), render_sample(3, 7, SIZE)
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            assert value.tobytes() == b[key].tobytes(), key
    assert not np.array_equal(a["image"], render_sample(4, 7, SIZE)["image"])
    assert not np.array_equal(a["image"], render_sample(3, 8, SIZE)["image"])


def test_same_scene_at_two_sizes() -> None:
    for i in range(5):
        small, large = render_sample(0, i, 48), render_sample(0, i, 96)
        assert small["image"].shape == (48, 48, 3) and large["semseg"].shape == (96, 96)
        np.testing.assert_array_equal(small["classes_present"], large["classes_present"])


def test_label_ranges(samples: list[dict]) -> None:
    tsv = resources.files("vmt_adapter").joinpath("resources/pascal_context_normals_valid_classes.tsv").read_text()
    valid_ctx = {int(row["id"]) for row in csv.DictReader(tsv.splitlines(), delimiter="\t")}
    assert set(SYNTH_CONTEXT_IDS.values()) - {0} <= valid_ctx
    assert 6 <= len(SYNTH_CLASSES) <= 10
    with_figure = 0
    for s in samples:
        assert s["image"].dtype == np.uint8 and s["image"].shape == (SIZE, SIZE, 3)
        assert s["semseg"].dtype == np.uint8 and s["semseg"].max() < len(SYNTH_CLASSES)
        parts = s["human_parts"]
        if (parts == 255).all():
            assert not (s["semseg"] == SYNTH_CLASSES.index("figure")).any()
            assert s["parts_instances"] == []
        else:
            with_figure += 1
            assert parts.max() <= 6
            np.testing.assert_array_equal(parts > 0, s["semseg"] == SYNTH_CLASSES.index("figure"))
            painted = np.zeros_like(parts)
            for name, mask in s["parts_instances"][0]["parts"]:
                painted[mask > 0] = PART_IDS[name]
            np.testing.assert_array_equal(painted, parts)
        assert set(np.unique(s["sal"])) <= {0, 1}
        salient = np.unique(s["instance"][s["sal"] == 1])
        counts = np.bincount(s["instance"].ravel())
        assert len(salient) == 1 and salient[0] > 0 and counts[salient[0]] == counts[1:].max()
        n, depth = s["normals"], s["depth"]
        valid = np.any(n != 0, axis=-1)
        np.testing.assert_allclose(np.linalg.norm(n[valid], axis=-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(valid, depth > 0)
        np.testing.assert_array_equal(valid, s["context"] > 0)
        assert set(np.unique(s["context"][valid])) <= valid_ctx
        expected = np.zeros(len(SYNTH_CLASSES), np.float32)
        expected[np.unique(s["semseg"])] = 1
        np.testing.assert_array_equal(s["classes_present"], expected)
    assert 0 < with_figure < N


def test_edges_thin_and_on_boundaries(samples: list[dict]) -> None:
    for s in samples:
        key = s["context"].astype(np.int64) * 65536 + s["instance"]
        right = np.zeros_like(key, bool)
        down = np.zeros_like(key, bool)
        right[:, :-1] = key[:, :-1] != key[:, 1:]
        down[:-1] = key[:-1] != key[1:]
        edge = s["edge"].astype(bool)
        np.testing.assert_array_equal(edge, right | down)  # only the pixel before each change: one side
        sem = s["semseg"]
        assert edge[:, :-1][sem[:, :-1] != sem[:, 1:]].all()  # every semantic boundary is marked
        assert edge.sum() <= right.sum() + down.sum()


def test_normals_and_depth_geometry() -> None:
    floor_checked = sphere_checked = 0
    for i in range(12):
        s = render_sample(0, i, SIZE)
        scene = _make_scene(0, i)
        up_cam, back_cam = scene.cam_rot[1], scene.cam_rot[2]  # world +y and +z in the camera frame
        n, depth = s["normals"], s["depth"]
        rays = _camera_rays(0, i, SIZE)
        valid = depth > 0
        assert (np.einsum("hwc,hwc->hw", n, rays)[valid] < 0).all()  # every visible surface faces the camera
        floor = s["context"] == SYNTH_CONTEXT_IDS["floor"]
        np.testing.assert_allclose(n[floor], np.broadcast_to(up_cam, n[floor].shape), atol=1e-5)
        wall = s["context"] == SYNTH_CONTEXT_IDS["wall"]
        np.testing.assert_allclose(n[wall], np.broadcast_to(back_cam, n[wall].shape), atol=1e-5)
        # z-depth d means the camera-frame point is ray * d; floor points lie camera-height below.
        heights = (rays[floor] * depth[floor][:, None]) @ up_cam
        np.testing.assert_allclose(heights, -scene.cam_pos[1], rtol=1e-4)
        floor_checked += int(floor.any())
        sphere = s["semseg"] == SYNTH_CLASSES.index("sphere")
        if sphere.sum() > 20:
            assert n[sphere][:, 2].mean() > 0.5
            sphere_checked += 1
    assert floor_checked and sphere_checked


def test_splits_disjoint() -> None:
    assert set(SPLITS) == {"train", "select", "val", "pretrain", "pretrain-val"}
    ranges = sorted(SPLITS.values(), key=lambda r: r.start)
    for a, b in zip(ranges, ranges[1:]):
        assert a.step == 1 and a.stop <= b.start


def test_unknown_task_and_split() -> None:
    with pytest.raises(ConfigError, match="provides semseg, human_parts"):
        SynthScenes(tasks=("semseg", "keypoints"))
    with pytest.raises(ConfigError, match="split"):
        SynthScenes(split="test")


def test_dataset_items(tmp_path) -> None:
    ds = SynthScenes("val", tasks=("semseg", "human_parts", "sal", "normals", "depth", "edge"), size=SIZE, num=3)
    assert len(ds) == 3 and ds.task_channels == {"semseg": len(SYNTH_CLASSES), "coarse_shape": 4}
    item = ds[1]
    assert item["id"] == "synth_val_000001"
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    for task in ("semseg", "human_parts", "sal", "edge"):
        assert item[task].shape == (SIZE, SIZE) and item[task].dtype == torch.int64
    assert item["normals"].shape == (3, SIZE, SIZE) and item["depth"].shape == (1, SIZE, SIZE)
    raw = ds.raw(1)
    assert set(raw) == {"image", "semseg", "human_parts", "sal", "normals", "depth", "edge", "classes_present", "id"}
    np.testing.assert_array_equal(raw["semseg"], render_sample(0, SPLITS["val"][1], SIZE)["semseg"])
    np.testing.assert_array_equal(item["semseg"].numpy(), raw["semseg"])

    seen = []
    wrapped = SynthScenes("train", tasks=("sal",), size=SIZE, num=2, transform=lambda x: seen.append(x) or "out")
    assert wrapped[0] == "out" and set(seen[0]) == {"image", "sal", "classes_present", "id"}

    cached = SynthScenes("train", tasks=("semseg", "normals"), size=SIZE, num=2, cache_dir=tmp_path)
    first = cached.raw(0)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob("*.tmp"))
    again = cached.raw(0)  # from the cache file
    for key in ("image", "semseg", "normals"):
        np.testing.assert_array_equal(first[key], again[key])
    np.testing.assert_array_equal(again["image"], render_sample(0, 0, SIZE)["image"])
    with pytest.raises(IndexError):
        cached.raw(2)


def test_coarse_shape_groups_the_classes_along_another_line() -> None:
    """The pretraining taxonomy, written out by hand: round solids, straight-edged or axial solids, the figure."""
    by_hand = {"background": 0, "sphere": 1, "ellipsoid": 1, "box": 2, "cylinder": 2, "cone": 2, "figure": 3}
    for index in range(4):
        s = render_sample(0, index, SIZE)
        for name, coarse in by_hand.items():
            assert (s["coarse_shape"][s["semseg"] == SYNTH_CLASSES.index(name)] == coarse).all()


def test_results_carry_the_dataset_version() -> None:
    from vmt_adapter.data.synth import VERSION
    from vmt_adapter.engine.config import load_config
    from vmt_adapter.engine.prior import prior_result

    assert VERSION.startswith("synthscenes-")
    assert (prior_result(load_config(None, ["data.size=32", "data.num_val=2", "data.cache_dir="]))["dataset_version"]
            == VERSION)


def test_prepare_renders_the_missing_cache_files_ahead_in_processes(tmp_path: Path) -> None:
    """``prepare`` renders exactly the samples whose cache file is missing (here 6 of 8: two were read
    earlier), in two processes, into uncompressed files that hold what ``render_sample`` returns."""
    import zipfile

    from vmt_adapter.data.synth import render_sample

    data = SynthScenes("val", num=8, size=32, cache_dir=tmp_path)
    data.raw(0), data.raw(5)
    assert data.prepare(workers=2) == 6 and data.prepare(workers=2) == 0
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 8 and not list(tmp_path.glob("*.tmp"))
    with zipfile.ZipFile(files[3]) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    direct = render_sample(data.seed, SPLITS["val"][7], 32)
    cached = data.raw(7)
    for key in ("image", "semseg", "human_parts", "sal", "normals"):
        assert np.array_equal(cached[key], direct[key]), key
    assert SynthScenes("val", num=8, size=32).prepare(workers=2) == 0  # no cache: nothing to do
