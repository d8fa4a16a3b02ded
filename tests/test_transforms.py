"""Joint transforms: one geometry for every task, normals that still agree with the warped scene, fills, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from vmt_adapter.data.synth import SynthScenes
from vmt_adapter.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Geometry, apply_geometry, build_transform
from vmt_adapter.errors import ConfigError
from vmt_adapter.tasks import IGNORE_INDEX


def sphere_sample(h: int = 64, w: int = 64, centre: tuple[float, float] = (38.0, 26.0), radius: float = 14.0) -> dict:
    """An orthographic sphere: semseg 1 inside, outward camera-frame normals (x right, y up), depth 2 / 5."""
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = (cols - centre[0]) / radius, -(rows - centre[1]) / radius
    inside = dx**2 + dy**2 < 1.0
    normals = np.stack([dx, dy, np.sqrt(np.clip(1.0 - dx**2 - dy**2, 0.0, 1.0))], axis=-1) * inside[..., None]
    image = np.zeros((h, w, 3), np.uint8)
    image[inside] = (200, 120, 40)
    return {
        "id": "sphere",
        "image": image,
        "semseg": inside.astype(np.uint8),
        "sal": inside.astype(np.uint8),
        "normals": normals.astype(np.float32),
        "depth": np.where(inside, 2.0, 5.0).astype(np.float32),
    }


@pytest.mark.parametrize(
    "geometry",
    [
        Geometry(),
        Geometry(flip=True),
        Geometry(scale=1.2, angle=17.0),
        Geometry(True, 0.8, -20.0),
        Geometry(True, 1.0, 90.0),
    ],
)
def test_sphere_normals_point_outward_after_warp(geometry: Geometry) -> None:
    raw = sphere_sample()
    out = apply_geometry(raw, geometry, (48, 48))
    inside = out["semseg"].numpy() == 1
    rows, cols = np.nonzero(inside)
    # The sphere's centre lands where the pixel map sends it.
    expected = geometry.pixel_map((64, 64), (48, 48)) @ np.array([38.0, 26.0, 1.0])
    assert np.allclose([cols.mean(), rows.mean()], expected[:2], atol=0.5)
    # In-plane normals point away from that centre, with y up (rows grow downwards).
    du, dv = cols - expected[0], -(rows - expected[1])
    radius = np.sqrt(inside.sum() / np.pi)
    ring = (np.hypot(du, dv) > 2.0) & (np.hypot(du, dv) < 0.8 * radius)
    n = out["normals"].numpy()[:, rows, cols]
    err = np.degrees(np.angle(np.exp(1j * (np.arctan2(n[1], n[0]) - np.arctan2(dv, du)))))
    assert np.median(np.abs(err[ring])) < 3.0
    assert np.allclose(np.linalg.norm(n, axis=0), 1.0, atol=1e-4)
    depths = np.unique(out["depth"].numpy())
    assert np.isclose(depths[:, None], [0.0, 2.0 / geometry.scale, 5.0 / geometry.scale]).any(axis=1).all()


def inverse_depth_direction_error(out: dict) -> float:
    """Median angle (deg) between in-plane normals and the direction of falling inverse depth.

    For a plane n . P = c seen by a pinhole camera (x right, y up, looking along -z), 1 / depth is
    affine in the image coordinates with gradient proportional to -(n_x, n_y), whatever the focal
    length: so the check needs no intrinsics and holds after any zoom, roll or flip.
    """
    depth, n, edge = out["depth"][0].numpy(), out["normals"].numpy(), out["edge"].numpy()
    inv = ndimage.uniform_filter(np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0), 3)
    grad_rows, grad_cols = np.gradient(inv)
    near_boundary = ndimage.binary_dilation((edge != 0) | (depth == 0), iterations=3)
    sel = ~near_boundary & (np.hypot(n[0], n[1]) > 0.3)
    diff = np.arctan2(grad_rows, -grad_cols) - np.arctan2(n[1], n[0])  # -(d/du, d/dv) with v = -row
    return float(np.median(np.abs(np.degrees(np.angle(np.exp(1j * diff[sel]))))))


@pytest.mark.parametrize("geometry", [Geometry(), Geometry(True, 1.1, 20.0), Geometry(False, 0.8, -20.0)])
def test_synth_normals_agree_with_warped_depth(geometry: Geometry) -> None:
    """On rendered scenes, normals and depth still describe the same surfaces after the warp.

    A wrong rotation sign gives about 40 degrees here, a wrong flip about 60.
    """
    scenes = SynthScenes("val", tasks=("normals", "depth", "edge"), size=96, num=2)
    for i in range(len(scenes)):
        assert inverse_depth_direction_error(apply_geometry(scenes.raw(i), geometry, (80, 80))) < 5.0


def test_positive_angle_turns_content_counter_clockwise() -> None:
    """A point right of the centre moves above it: the screen-space meaning of a positive angle."""
    m = Geometry(angle=90.0).pixel_map((11, 11), (11, 11))
    x, y, _ = m @ np.array([8.0, 5.0, 1.0])
    assert np.allclose([x, y], [5.0, 2.0])


def test_flip_mirrors_every_task_and_negates_normal_x() -> None:
    raw = sphere_sample()
    out = apply_geometry(raw, Geometry(flip=True), (64, 64))
    ref = apply_geometry(raw, Geometry(), (64, 64))
    assert torch.equal(out["semseg"], ref["semseg"].flip(-1))
    assert torch.allclose(out["image"], ref["image"].flip(-1))
    assert torch.allclose(out["normals"][0], -ref["normals"][0].flip(-1), atol=1e-6)
    assert torch.allclose(out["normals"][1:], ref["normals"][1:].flip(-1), atol=1e-6)


def test_outside_is_ignore_not_zero() -> None:
    out = apply_geometry(sphere_sample(), Geometry(scale=0.75, angle=20.0), (32, 32))
    corner = (slice(0, 2), slice(0, 2))
    assert (out["semseg"][corner] == IGNORE_INDEX).all() and (out["sal"][corner] == IGNORE_INDEX).all()
    assert (out["normals"][(slice(None),) + corner] == 0).all()
    assert (out["depth"][(slice(None),) + corner] == 0).all()
    assert torch.allclose(out["image"][(slice(None),) + corner], torch.zeros(3, 2, 2), atol=1e-6)  # mean fill
    assert out["semseg"].dtype == torch.int64 and out["depth"].shape == (1, 32, 32)


def test_reference_padding_fills_zero_labels_and_a_black_image() -> None:
    """The public code's warpAffine fill: labels 0 (background, not salient), image 0 before normalisation."""
    sample = sphere_sample()
    out = apply_geometry(sample, Geometry(scale=0.75, angle=20.0), (32, 32), pad="zero")
    ignore = apply_geometry(sample, Geometry(scale=0.75, angle=20.0), (32, 32))
    corner = (slice(0, 2), slice(0, 2))
    assert (out["semseg"][corner] == 0).all() and (out["sal"][corner] == 0).all()
    black = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(out["image"][(slice(None),) + corner], black, atol=1e-6)
    inside = ignore["semseg"] != IGNORE_INDEX  # where the source covers the output, both fills agree
    assert torch.equal(out["semseg"][inside], ignore["semseg"][inside])
    with pytest.raises(ConfigError, match="data.pad 'edge'"):
        build_transform(train=True, size=32, pad="edge")


def test_human_parts_without_a_part_are_ignored_whole() -> None:
    """Hand-made 16 x 16 maps. An image without annotated parts (all 255) stays all-ignore in both pads (a zero
    pad used to make its border supervised background). A part in the top-left 2 x 2 corner is cropped away by
    a 1.25 zoom about the centre (the corner's centre, 7 pixels from the image centre on each axis, lands
    8.75 away, outside the 16-pixel canvas): the map is then all background, which ``emptied="ignore"``
    ignores whole as the public code's AddIgnoreRegions does and ``"keep"`` supervises. A part at the centre
    survives the zoom and is kept under both."""
    image = np.zeros((16, 16, 3), np.uint8)
    zoom = Geometry(scale=1.25)
    for pad in ("ignore", "zero"):
        for emptied in ("keep", "ignore"):
            unannotated = {"image": image, "human_parts": np.full((16, 16), 255, np.uint8)}
            out = apply_geometry(unannotated, Geometry(scale=0.75, angle=20.0), (16, 16), pad, emptied)
            assert (out["human_parts"] == IGNORE_INDEX).all(), (pad, emptied)
            corner = np.zeros((16, 16), np.uint8)
            corner[:2, :2] = 3
            out = apply_geometry({"image": image, "human_parts": corner}, zoom, (16, 16), pad, emptied)["human_parts"]
            assert (out == (IGNORE_INDEX if emptied == "ignore" else 0)).all(), (pad, emptied)
            centre = np.zeros((16, 16), np.uint8)
            centre[6:10, 6:10] = 3
            out = apply_geometry({"image": image, "human_parts": centre}, zoom, (16, 16), pad, emptied)["human_parts"]
            assert (out == 3).sum() == 25 and (out == 0).sum() == 16 * 16 - 25, (pad, emptied)  # 4 x 1.25 -> 5 x 5
    corner_semseg = apply_geometry({"image": image, "semseg": corner}, zoom, (16, 16), emptied="ignore")["semseg"]
    assert (corner_semseg == 0).all()  # other tasks: an empty map is background, as annotated
    with pytest.raises(ConfigError, match="data.emptied 'drop'"):
        build_transform(train=True, size=16, emptied="drop")


def test_eval_without_size_keeps_the_sample() -> None:
    raw = sphere_sample(40, 52)
    out = build_transform(train=False, size=None)(raw)
    assert out["id"] == "sphere"
    assert torch.equal(out["semseg"], torch.from_numpy(raw["semseg"]).long())
    assert torch.allclose(out["normals"], torch.from_numpy(raw["normals"]).permute(2, 0, 1), atol=1e-6)
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    expected = ((raw["image"] / 255.0 - mean) / std).transpose(2, 0, 1)
    assert np.allclose(out["image"].numpy(), expected, atol=1e-5)


def test_training_is_deterministic_per_sample_and_epoch() -> None:
    t = build_transform(train=True, size=32, seed=3)
    raw = sphere_sample()
    a, b = t(raw), t(raw)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["semseg"], b["semseg"])
    other = t(dict(raw, id="another"))
    t.set_epoch(1)
    later = t(raw)
    assert not torch.equal(a["image"], other["image"]) and not torch.equal(a["image"], later["image"])
    fixed = t(raw, rng=np.random.default_rng(0)), t(raw, rng=np.random.default_rng(0))
    assert torch.equal(fixed[0]["normals"], fixed[1]["normals"])


def test_training_needs_a_size() -> None:
    with pytest.raises(ConfigError, match="size"):
        build_transform(train=True, size=None)


@settings(max_examples=12, deadline=None)
@given(
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    size=st.one_of(st.none(), st.integers(4, 40)),
    seed=st.integers(0, 2**16),
)
def test_any_size_gives_contract_tensors(h: int, w: int, size: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(h, w, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    normals[rng.random((h, w)) < 0.2] = 0.0
    raw = {
        "id": f"r{seed}",
        "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "semseg": rng.choice(np.array([0, 3, 7, 255], np.uint8), (h, w)),
        "normals": normals,
        "depth": rng.choice(np.array([0.0, 1.5, 4.0], np.float32), (h, w)),
    }
    t = build_transform(train=size is not None, size=size, seed=seed)
    out = t(raw)
    oh, ow = (h, w) if size is None else (size, size)
    assert out["image"].shape == (3, oh, ow) and out["image"].dtype == torch.float32
    assert out["semseg"].shape == (oh, ow) and out["semseg"].dtype == torch.int64
    assert set(out["semseg"].unique().tolist()) <= {0, 3, 7, 255}
    norms = out["normals"].norm(dim=0)
    assert ((norms - 1).abs() < 1e-4).logical_or(norms == 0).all()
    assert out["depth"].shape == (1, oh, ow) and (out["depth"] >= 0).all()
