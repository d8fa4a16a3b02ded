"""SynthScenes: procedural, analytically ray-cast scenes with exact per-pixel ground truth.

Why it exists: nothing can be downloaded at run time, yet the whole multi-task pipeline must run
and be tested on a laptop (docs/design.md, section 7). Every sample is a pure function of
``(seed, index, size)`` and
``VERSION``; the scene is drawn from ``np.random.default_rng([seed, index])`` before the
sampling grid is known, so two resolutions show the same scene.

Geometry (world frame, metres): y is up, the floor is the plane y = 0, the back wall is the plane
z = ``z_wall`` < 0 facing +z, the camera sits at x = z = 0 at a random height and looks roughly
along -z (random pitch down, yaw jitter, field of view). Objects stand on the floor between the
camera and the wall: 2-4 primitives and, in about 80 % of the images, one articulated figure
(ellipsoid head and torso, capsule limbs, random pose). Textures (plain, stripes, checks, value
noise) and colours are drawn the same way for every surface, so only shape identifies a class.

Label conventions (what ``render_sample`` returns):

- ``semseg``: ``SYNTH_CLASSES`` ids. 0 background = floor, wall and rays that hit nothing; one
  class per primitive kind; the figure is class ``"figure"``.
- ``human_parts``: PASCAL ids (1 head, 2 torso, 3 upper arm, 4 lower arm incl. hand, 5 upper leg,
  6 lower leg incl. foot, 0 elsewhere); all 255 when no figure is visible, as in PASCAL.
- ``sal``: the foreground object (primitive or figure) with the most visible pixels; ties go to
  the lower instance id; all 0 if no object is visible.
- ``normals``: camera-frame unit normals, x right, y up, z towards the camera (OpenGL), so a
  visible surface has ``dot(normal, view ray) < 0``; zero where nothing was hit.
- ``depth``: z-depth along the optical axis in metres; 0 where nothing was hit.
- ``edge``: 1 on the pixel before each change of the (context, instance) label to the right or
  below, i.e. one-pixel boundaries of the semantic and instance maps plus the floor/wall seam
  (PASCAL derives edges from its context ``LabelMap``, which also separates floor and wall).
- ``instance``: 1.. per object in placement order (the figure included), 0 for floor/wall/void.
- ``context``: PASCAL-Context ids via ``SYNTH_CONTEXT_IDS`` (0 = unlabelled, only where no
  surface is hit); every id used is in the benchmark's normals-valid list.
- ``parts_instances``: for the exporter's ``human_parts/<id>.mat``, a list (empty without a
  visible figure) of ``{"class_ind": 15, "mask": uint8 (H, W), "parts": [(name, uint8 mask)]}``
  with PASCAL-Part names (head, torso, luarm, ...; "l" is the figure's own left).
- ``classes_present``: float32 multi-hot over ``SYNTH_CLASSES`` taken from ``semseg``.
- ``coarse_shape``: ``COARSE_SHAPES`` ids (the pretraining taxonomy), a function of ``semseg``.

Labels are exact at pixel centres; only the image is anti-aliased (4 extra rays on pixels where
the hit surface changes).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .labels import HUMAN_PARTS
from .registry import register_dataset
from .transforms import Geometry, apply_geometry
from .visualize import save_panel

SYNTH_CLASSES: list[str] = ["background", "sphere", "box", "cylinder", "cone", "ellipsoid", "figure"]

# PASCAL-Context (459-class) ids for export, all in resources/pascal_context_normals_valid_classes.tsv
# so that normals survive the benchmark's mask. "background" is 0 (unlabelled): only void pixels
# keep it, since floor and wall pixels get their own ids.
SYNTH_CONTEXT_IDS: dict[str, int] = {
    "background": 0,
    "floor": 158,
    "wall": 440,
    "sphere": 10,  # ball
    "box": 37,  # box
    "cylinder": 13,  # barrel
    "cone": 87,  # cone
    "ellipsoid": 11,  # balloon
    "figure": 284,  # person
}

# Disjoint index ranges: sample i of a split is global index SPLITS[split][i] (for any seed), so
# train, val and pretrain never share a scene. "pretrain" is reserved for upstream pretraining of
# the demo backbone (``vmt pretrain``: depth, edges and the ``coarse_shape`` taxonomy below).
SPLITS: dict[str, range] = {
    "train": range(0, 900_000),
    # Held out of train for choosing hyper-parameters (``vmt sweep``): train-distribution scenes that no
    # training run reads (runs read the first ``num_train`` train scenes), never the reported val split.
    "select": range(900_000, 1_000_000),
    "val": range(1_000_000, 2_000_000),
    "pretrain": range(2_000_000, 3_000_000),
    "pretrain-val": range(3_000_000, 3_100_000),  # held out from pretraining, for its own evaluation
}
DEFAULT_NUM: dict[str, int] = {"train": 2000, "select": 200, "val": 200, "pretrain": 4000, "pretrain-val": 200}

# The pretraining taxonomy (``coarse_shape``), coarser than ``SYNTH_CLASSES`` and cut along another
# line: round solids, solids with straight edges or an axis, and the articulated figure. Downstream
# semseg has to split the first two groups (sphere vs ellipsoid; box vs cylinder vs cone), and
# human_parts the third, from features that were never trained on those distinctions.
COARSE_SHAPES: list[str] = ["stuff", "round", "straight", "articulated"]
COARSE_OF_CLASS: dict[str, str] = {
    "background": "stuff", "sphere": "round", "ellipsoid": "round",
    "box": "straight", "cylinder": "straight", "cone": "straight", "figure": "articulated",
}  # fmt: skip
_COARSE_LUT = np.array([COARSE_SHAPES.index(COARSE_OF_CLASS[c]) for c in SYNTH_CLASSES], np.uint8)

# PASCAL-Part person part names of the figure's limbs, and their 6-part ids (docs/design.md, section 5.1).
PART_IDS: dict[str, int] = {
    "head": 1, "torso": 2, "luarm": 3, "ruarm": 3, "llarm": 4, "rlarm": 4,
    "luleg": 5, "ruleg": 5, "llleg": 6, "rlleg": 6,
}  # fmt: skip
PERSON_CLASS_IND = 15  # PASCAL VOC "person", as PASCAL-Part's ``class_ind``
FIGURE_PROB = 0.8
FIGURE_GIRTH = 1.6  # version 3: head, torso and limbs 1.6x as thick as version 2's (lengths unchanged)
# A sample is a pure function of (seed, index, size, VERSION). Every results file records VERSION;
# bump it whenever the generator's output changes (it also keys the on-disk cache).
# Version 2: camera closer and lower, larger primitives, 2-4 of them: objects cover about a third
# of the image instead of 8 %, so the semantic tasks can leave the background-only solution.
# Version 3: the figure's head, torso and limbs are 1.6x as thick (``FIGURE_GIRTH``): at 64 px a
# version-2 lower arm was 1-2 pixels wide and a head 0.4 % of the pixels, too thin for any method
# to segment parts (decoder-only per-part IoU 0.1 to 26 after pretraining); now 11.5 % of the
# pixels of a scene with a figure are figure, against 7.1 %.
VERSION = "synthscenes-3"

_PRIMITIVES = ("sphere", "box", "cylinder", "cone", "ellipsoid")
_FLOOR, _WALL = 0, 1  # surface ids; shapes follow from 2, -1 means no hit
_EPS = 1e-6


# --------------------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class _Shape:
    """One closed surface. ``rot`` maps world vectors to the shape's local frame (row form: v @ rot.T)."""

    kind: str  # "ellipsoid" | "capsule" | "box" | "cylinder" | "cone"
    centre: np.ndarray  # local origin (world); base centre for cylinder and cone
    rot: np.ndarray
    size: np.ndarray  # ellipsoid radii | box half extents | (radius, height) | capsule (radius,)
    bound_c: np.ndarray  # bounding sphere, for culling rays
    bound_r: float
    end: np.ndarray | None = None  # capsule second end point (``centre`` is the first)


@dataclass(frozen=True)
class _Texture:
    """A procedural albedo: ``mix(c1, c2, pattern(freq * local position))``."""

    kind: int  # 0 plain, 1 stripes, 2 checks, 3 value noise
    c1: np.ndarray  # linear RGB
    c2: np.ndarray
    freq: float
    axis: np.ndarray  # stripe direction (local)
    hash_seed: int


@dataclass(frozen=True)
class _Scene:
    """Everything a sample shows; independent of the output size."""

    cam_rot: np.ndarray  # camera-to-world rotation (columns: camera x, y, z in world)
    cam_pos: np.ndarray
    tan_half_fov: float
    z_wall: float
    light_dir: np.ndarray  # unit, towards the light
    light_col: np.ndarray
    ambient: float
    shapes: list[_Shape]  # surface id = 2 + position
    textures: list[_Texture]  # per surface id (floor, wall, shapes)
    # Per-surface label look-up tables with one extra "void" entry at the end (indexed by -1).
    sem: np.ndarray
    inst: np.ndarray
    ctx: np.ndarray
    part: np.ndarray
    part_names: list[str]  # per surface id, "" for non-figure surfaces
    figure_inst: int  # instance id of the figure, 0 if none


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour (HSV sampled, returned as linear RGB) shared by every class."""
    h, s, v = rng.random(), rng.uniform(0.15, 0.9), rng.uniform(0.3, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb**2.2


def _texture(rng: np.random.Generator, scale: float) -> _Texture:
    """Random texture; ``scale`` is the typical pattern period in metres."""
    axis = rng.normal(size=3)
    return _Texture(
        kind=int(rng.integers(4)),
        c1=_colour(rng),
        c2=_colour(rng),
        freq=float(1.0 / (scale * rng.uniform(0.5, 2.0))),
        axis=axis / np.linalg.norm(axis),
        hash_seed=int(rng.integers(2**32)),
    )


def _primitive(rng: np.random.Generator, kind: str, yaw: float) -> tuple[_Shape, float]:
    """A primitive standing on the floor at x = z = 0; returns it and its footprint radius."""
    rot = _rot_y(yaw).T
    if kind == "sphere":
        r = rng.uniform(0.3, 0.6)
        size, c, foot = np.full(3, r), np.array([0.0, r, 0.0]), r
        bc, br = c, r
    elif kind == "ellipsoid":
        size = rng.uniform(0.2, 0.7, size=3)
        while size.max() < 1.6 * size.min():  # keep it visibly unlike a sphere
            size = rng.uniform(0.2, 0.7, size=3)
        c, foot = np.array([0.0, size[1], 0.0]), max(size[0], size[2])
        bc, br = c, size.max()
    elif kind == "box":
        if rng.random() < 0.4:
            rot = np.eye(3)  # axis-aligned
        size = rng.uniform(0.22, 0.55, size=3)
        c, foot = np.array([0.0, size[1], 0.0]), float(np.hypot(size[0], size[2]))
        bc, br = c, float(np.linalg.norm(size))
    else:  # cylinder or cone: base centre on the floor, (radius, height)
        r = rng.uniform(0.22, 0.45) if kind == "cylinder" else rng.uniform(0.28, 0.55)
        h = rng.uniform(0.5, 1.4) if kind == "cylinder" else rng.uniform(0.6, 1.4)
        size, c, foot = np.array([r, h]), np.array([0.0, 0.0, 0.0]), r
        bc, br = np.array([0.0, h / 2, 0.0]), float(np.hypot(r, h / 2))
    geometry = "ellipsoid" if kind == "sphere" else kind  # a sphere is an ellipsoid with equal radii
    return _Shape(geometry, c, rot, size, bc, float(br)), float(foot)


def _perp(u: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Unit vector orthogonal to unit ``u``, in the plane of ``u`` and ``hint`` when possible."""
    w = hint - u * (hint @ u)
    n = np.linalg.norm(w)
    if n < 1e-6:
        w = np.array([1.0, 0.0, 0.0]) - u * u[0]
        n = np.linalg.norm(w)
    return w / n


def _figure(rng: np.random.Generator, x: float, z: float, yaw: float) -> list[tuple[str, _Shape]]:
    """An articulated figure in a random pose, feet (or lowest limb) on the floor at (x, z).

    Built facing +z in its own frame with its left towards +x, so facing the camera its left
    side appears on the image's right, as for a real person.
    """
    s = rng.uniform(0.85, 1.1)  # the pelvis is the origin of the figure frame
    w = FIGURE_GIRTH * s  # thickness of head, torso and limbs (their lengths scale with s alone)
    lean, twist = rng.uniform(-0.25, 0.25), rng.uniform(-0.3, 0.3)
    torso_rot = _rot_y(twist) @ _rot_x(lean)  # local -> figure
    up = torso_rot @ np.array([0.0, 1.0, 0.0])
    side = torso_rot @ np.array([1.0, 0.0, 0.0])
    head_rot = torso_rot @ _rot_y(rng.uniform(-0.5, 0.5)) @ _rot_x(rng.uniform(-0.3, 0.3))
    parts: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]] = [
        ("torso", "ellipsoid", 0.3 * s * up, torso_rot, np.array([0.17 * w, 0.3 * s, 0.11 * w])),
        ("head", "ellipsoid", (0.6 * s + 0.125 * w) * up, head_rot, np.array([0.1, 0.125, 0.11]) * w),
    ]
    for sign, tag in ((1.0, "l"), (-1.0, "r")):
        shoulder = 0.52 * s * up + sign * (0.03 * s + 0.17 * w) * side
        raise_, forward = rng.uniform(0.0, 1.8), rng.uniform(-1.0, 2.4)
        arm = torso_rot @ _rot_z(sign * raise_) @ _rot_x(-forward) @ np.array([0.0, -1.0, 0.0])
        bend = rng.uniform(0.0, 2.3)
        fore = np.cos(bend) * arm + np.sin(bend) * _perp(arm, torso_rot @ np.array([0.0, 0.3, 1.0]))
        elbow = shoulder + 0.3 * s * arm
        parts += [
            (tag + "uarm", "capsule", shoulder, elbow, np.array([0.055 * w])),
            (tag + "larm", "capsule", elbow, elbow + 0.33 * s * fore, np.array([0.045 * w])),
        ]
        hip = sign * 0.1 * w * side
        lift, spread = rng.uniform(-0.4, 1.6), rng.uniform(0.0, 0.45)
        thigh = _rot_z(sign * spread) @ _rot_x(-lift) @ np.array([0.0, -1.0, 0.0])
        knee_bend = rng.uniform(0.0, min(2.0, 0.3 + 1.5 * max(lift, 0.0)))
        shin = np.cos(knee_bend) * thigh + np.sin(knee_bend) * _perp(thigh, np.array([0.0, 0.0, -1.0]))
        knee = hip + 0.45 * s * thigh
        parts += [
            (tag + "uleg", "capsule", hip, knee, np.array([0.075 * w])),
            (tag + "lleg", "capsule", knee, knee + 0.47 * s * shin, np.array([0.06 * w])),
        ]
    body = _rot_y(yaw)
    lowest = np.inf  # lowest point in the figure frame, to stand the figure on the floor
    for _, kind, a, b, size in parts:
        if kind == "capsule":
            lowest = min(lowest, a[1] - size[0], b[1] - size[0])
        else:  # ellipsoid a=centre, b=local->figure rotation: extent along y
            lowest = min(lowest, a[1] - float(np.linalg.norm(size * b[1])))
    offset = np.array([x, -lowest, z])
    shapes: list[tuple[str, _Shape]] = []
    for name, kind, a, b, size in parts:
        if kind == "capsule":
            p, q = body @ a + offset, body @ b + offset
            shape = _Shape(kind, p, np.eye(3), size, (p + q) / 2, float(np.linalg.norm(q - p) / 2 + size[0]), q)
        else:
            c = body @ a + offset
            shape = _Shape(kind, c, (body @ b).T, size, c, float(size.max()))
        shapes.append((name, shape))
    return shapes


def _make_scene(seed: int, index: int) -> _Scene:
    """Draw a scene; the only randomness of a sample, and independent of the output size."""
    rng = np.random.default_rng([seed, index])
    height = rng.uniform(1.0, 1.6)
    pitch = np.radians(rng.uniform(4.0, 20.0))
    yaw = np.radians(rng.uniform(-15.0, 15.0))
    half_fov = np.radians(rng.uniform(15.0, 22.0))
    cam_rot = _rot_y(yaw) @ _rot_x(-pitch)
    # Nearest ground distance whose floor point is comfortably inside the view.
    near = max(1.8, height / np.tan(pitch + 0.9 * half_fov))
    far = near + rng.uniform(1.0, 2.0)

    placed: list[tuple[float, float, float]] = []  # (x, z, footprint radius)

    def place(foot: float) -> tuple[float, float] | None:
        """A floor position in view, not overlapping earlier objects (None after 30 failures)."""
        for _ in range(30):
            dist = rng.uniform(near + foot, far + foot)
            ang = yaw + rng.uniform(-0.8, 0.8) * half_fov
            x, z = -np.sin(ang) * dist, -np.cos(ang) * dist
            if all(np.hypot(x - px, z - pz) > foot + pf + 0.05 for px, pz, pf in placed):
                placed.append((x, z, foot))
                return float(x), float(z)
        return None

    shapes: list[_Shape] = []
    textures = [_texture(rng, 0.8), _texture(rng, 0.8)]
    sem, inst, ctx, part = [0, 0], [0, 0], [SYNTH_CONTEXT_IDS["floor"], SYNTH_CONTEXT_IDS["wall"]], [0, 0]
    names = ["", ""]
    figure_inst = 0
    n_inst = 0
    if rng.random() < FIGURE_PROB:
        spot = place(0.55 + 0.1 * (FIGURE_GIRTH - 1.0))  # wider limbs and shoulders: a wider footprint
        if spot is not None:
            n_inst += 1
            figure_inst = n_inst
            palette = {g: _texture(rng, 0.2) for g in ("head", "top", "sleeve", "legs")}
            group = {"head": "head", "torso": "top", "uarm": "top", "larm": "sleeve", "uleg": "legs", "lleg": "legs"}
            for name, shape in _figure(rng, *spot, rng.uniform(-2.0, 2.0)):
                shapes.append(shape)
                textures.append(palette[group[name if name in group else name[1:]]])
                sem.append(SYNTH_CLASSES.index("figure"))
                inst.append(figure_inst)
                ctx.append(SYNTH_CONTEXT_IDS["figure"])
                part.append(PART_IDS[name])
                names.append(name)
    for _ in range(int(rng.integers(2, 5))):
        kind = _PRIMITIVES[int(rng.integers(len(_PRIMITIVES)))]
        # Draw the shape first (at the origin) so its footprint is known before placing it.
        shape, foot = _primitive(rng, kind, rng.uniform(0.0, np.pi))
        spot = place(foot)
        if spot is None:
            continue
        shift = np.array([spot[0], 0.0, spot[1]])
        shapes.append(replace(shape, centre=shape.centre + shift, bound_c=shape.bound_c + shift))
        textures.append(_texture(rng, 0.25))
        n_inst += 1
        sem.append(SYNTH_CLASSES.index(kind))
        inst.append(n_inst)
        ctx.append(SYNTH_CONTEXT_IDS[kind])
        part.append(0)
        names.append("")
    back = max(-z + f for _, z, f in placed) if placed else far
    z_wall = -(back + rng.uniform(0.8, 3.0))
    el, az = np.radians(rng.uniform(30.0, 75.0)), np.radians(rng.uniform(-70.0, 70.0))
    light = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    warm = rng.uniform(-0.1, 0.1)
    return _Scene(
        cam_rot=cam_rot,
        cam_pos=np.array([0.0, height, 0.0]),
        tan_half_fov=float(np.tan(half_fov)),
        z_wall=float(z_wall),
        light_dir=light,
        light_col=np.array([1.0 + warm, 1.0, 1.0 - warm]),
        ambient=float(rng.uniform(0.2, 0.45)),
        shapes=shapes,
        textures=textures,
        sem=np.array(sem + [0], np.uint8),
        inst=np.array(inst + [0], np.uint16),
        ctx=np.array(ctx + [SYNTH_CONTEXT_IDS["background"]], np.uint16),
        part=np.array(part + [0], np.uint8),
        part_names=names,
        figure_inst=figure_inst,
    )


# ------------------------------------------------------------------------------ ray casting
# Each ``_hit_*`` takes ray origins o and unit directions d, one of them (M, 3) and the other (3,)
# or (M, 3), and returns the nearest positive hit distance (M,) (inf on a miss). Each ``_normal_*``
# takes hit points (M, 3) and returns (unnormalised) outward normals.


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


def _first_positive(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """The smaller of two root arrays (t1 <= t2) that is ahead of the origin, else inf."""
    return np.where(t1 > _EPS, t1, np.where(t2 > _EPS, t2, np.inf))


def _hit_ellipsoid(s: _Shape, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    ol = ((o - s.centre) @ s.rot.T) / s.size
    dl = (d @ s.rot.T) / s.size
    a, b, c = _dot(dl, dl), _dot(ol, dl), _dot(ol, ol) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = _first_positive((-b - root) / a, (-b + root) / a)
    return np.where(disc >= 0.0, t, np.inf)


def _normal_ellipsoid(s: _Shape, p: np.ndarray) -> np.ndarray:
    return (((p - s.centre) @ s.rot.T) / s.size**2) @ s.rot


def _hit_capsule(s: _Shape, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Capsule = cylinder body between end points plus hemispherical caps (Quilez's formulation)."""
    a, r = s.centre, s.size[0]
    ba, oa = s.end - a, o - a
    baba, bard, baoa = ba @ ba, d @ ba, oa @ ba
    rdoa, oaoa = _dot(d, oa), _dot(oa, oa)
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r * r * baba
    h = qb * qb - qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
    y = baoa + t * bard
    body = (h >= 0.0) & (y > 0.0) & (y < baba) & (t > _EPS)
    # Caps: the sphere at the end the body intersection fell beyond.
    oc = np.where((y <= 0.0)[..., None], oa, oa - ba)
    cb = _dot(d, oc)
    hc = cb * cb - (_dot(oc, oc) - r * r)
    tc = -cb - np.sqrt(np.maximum(hc, 0.0))
    cap = (h >= 0.0) & ~body & (hc >= 0.0) & (tc > _EPS)
    return np.where(body, t, np.where(cap, tc, np.inf))


def _normal_capsule(s: _Shape, p: np.ndarray) -> np.ndarray:
    ba = s.end - s.centre
    pa = p - s.centre
    h = np.clip(pa @ ba / (ba @ ba), 0.0, 1.0)
    return pa - h[:, None] * ba


def _hit_box(s: _Shape, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    ol = (o - s.centre) @ s.rot.T
    dl = d @ s.rot.T
    inv = 1.0 / np.where(np.abs(dl) < 1e-12, 1e-12, dl)
    t1, t2 = (-s.size - ol) * inv, (s.size - ol) * inv
    near = np.minimum(t1, t2).max(axis=-1)
    far = np.maximum(t1, t2).min(axis=-1)
    return np.where((far >= near) & (far > _EPS), np.where(near > _EPS, near, far), np.inf)


def _normal_box(s: _Shape, p: np.ndarray) -> np.ndarray:
    q = ((p - s.centre) @ s.rot.T) / s.size
    axis = np.abs(q).argmax(axis=1)
    n = np.zeros_like(q)
    rows = np.arange(len(q))
    n[rows, axis] = np.sign(q[rows, axis])
    return n @ s.rot


def _hit_cylinder(s: _Shape, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Vertical cylinder on the floor: side and top disc (the bottom lies on the floor, never seen)."""
    r, h = s.size
    ol = o - s.centre
    ox, oy, oz = ol[..., 0], ol[..., 1], ol[..., 2]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a, b, c = dx * dx + dz * dz, ox * dx + oz * dz, ox * ox + oz * oz - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(disc, 0.0))
        ts = _first_positive((-b - root) / a, (-b + root) / a)
        ys = oy + ts * dy
        side = np.where((disc >= 0.0) & (ys >= 0.0) & (ys <= h), ts, np.inf)
        tt = (h - oy) / dy
    xt, zt = ox + tt * dx, oz + tt * dz
    top = np.where((tt > _EPS) & (xt * xt + zt * zt <= r * r), tt, np.inf)
    return np.minimum(side, top)


def _normal_cylinder(s: _Shape, p: np.ndarray) -> np.ndarray:
    r, h = s.size
    q = p - s.centre
    n = q * np.array([1.0, 0.0, 1.0])
    on_top = np.abs(q[:, 1] - h) < 1e-7 * max(h, 1.0) + 1e-9
    on_top &= n[:, 0] ** 2 + n[:, 2] ** 2 < (r * (1 - 1e-7)) ** 2
    n[on_top] = (0.0, 1.0, 0.0)
    return n


def _hit_cone(s: _Shape, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Vertical cone, base radius r on the floor, apex at height h: x^2 + z^2 = k^2 (h - y)^2."""
    r, h = s.size
    k2 = (r / h) ** 2
    ol = o - s.centre
    y0 = ol[..., 1]
    ox, q, oz = ol[..., 0], h - ol[..., 1], ol[..., 2]
    dx, dq, dz = d[..., 0], -d[..., 1], d[..., 2]
    a = dx * dx + dz * dz - k2 * dq * dq
    b = ox * dx + oz * dz - k2 * q * dq
    c = ox * ox + oz * oz - k2 * q * q
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(disc, 0.0))
        r1, r2 = (-b - root) / a, (-b + root) / a
        t1, t2 = np.minimum(r1, r2), np.maximum(r1, r2)
        y1, y2 = y0 + t1 * d[..., 1], y0 + t2 * d[..., 1]
    ok = disc >= 0.0
    v1 = ok & (t1 > _EPS) & (y1 >= 0.0) & (y1 <= h)
    v2 = ok & (t2 > _EPS) & (y2 >= 0.0) & (y2 <= h)
    return np.where(v1, t1, np.where(v2, t2, np.inf))


def _normal_cone(s: _Shape, p: np.ndarray) -> np.ndarray:
    r, h = s.size
    q = p - s.centre
    n = q.copy()
    n[:, 1] = (r / h) ** 2 * (h - q[:, 1])
    return n


_HIT: dict[str, Callable[[_Shape, np.ndarray, np.ndarray], np.ndarray]] = {
    "ellipsoid": _hit_ellipsoid, "capsule": _hit_capsule, "box": _hit_box,
    "cylinder": _hit_cylinder, "cone": _hit_cone,
}  # fmt: skip
_NORMAL: dict[str, Callable[[_Shape, np.ndarray], np.ndarray]] = {
    "ellipsoid": _normal_ellipsoid, "capsule": _normal_capsule, "box": _normal_box,
    "cylinder": _normal_cylinder, "cone": _normal_cone,
}  # fmt: skip


def sphere_candidates(centre: np.ndarray, radius: float, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Indices of the rays from ``o`` (3,) along unit ``d`` (M, 3) that meet a bounding sphere ahead of ``o``."""
    oc = centre - o
    b = d @ oc
    c = oc @ oc - radius**2
    return np.flatnonzero((b > 0.0) & (b * b >= c)) if c > 0.0 else np.arange(len(d))


def _cast_shapes(shapes: Sequence[_Shape], o: np.ndarray, d: np.ndarray, t: np.ndarray, sid: np.ndarray) -> None:
    """Lower ``t`` / set ``sid`` (2 + shape index) in place where a shape is nearer.

    Either all rays share one origin (camera rays: ``o`` (3,), ``d`` (M, 3)) or one direction
    (shadow rays: ``o`` (M, 3), ``d`` (3,)). Only rays that meet a shape's bounding sphere are
    intersected exactly, which keeps a sample cheap: most shapes cover a small part of the image.
    """
    if d.ndim == 1:  # shadow rays: cull in the plane orthogonal to the common direction
        e1 = _perp(d, np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0]))
        basis = np.stack([e1, np.cross(d, e1)], axis=1)
        plane = o @ basis
        along = o @ d
    for k, s in enumerate(shapes):
        if d.ndim == 1:
            cx, cy = s.bound_c @ basis
            inside = (plane[:, 0] - cx) ** 2 + (plane[:, 1] - cy) ** 2 <= s.bound_r**2
            cand = np.flatnonzero(inside & (along < s.bound_c @ d + s.bound_r))
        else:
            cand = sphere_candidates(s.bound_c, s.bound_r, o, d)
        if cand.size == 0:
            continue
        tk = _HIT[s.kind](s, o[cand], d) if d.ndim == 1 else _HIT[s.kind](s, o, d[cand])
        closer = tk < t[cand]
        idx = cand[closer]
        t[idx] = tk[closer]
        sid[idx] = 2 + k


def _trace(scene: _Scene, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit distance and surface id (-1: nothing) of camera rays with world directions d."""
    o = scene.cam_pos
    with np.errstate(divide="ignore"):
        t_floor = np.where(d[:, 1] < 0.0, -o[1] / d[:, 1], np.inf)
        t_wall = np.where(d[:, 2] < 0.0, (scene.z_wall - o[2]) / d[:, 2], np.inf)
    t = np.minimum(t_floor, t_wall)
    sid = np.where(t_floor <= t_wall, _FLOOR, _WALL)
    sid[~np.isfinite(t)] = -1
    _cast_shapes(scene.shapes, o, d, t, sid)
    return t, sid


# ---------------------------------------------------------------------------------- shading


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic lattice hash in [0, 1) (uint32 arithmetic wraps, which is intended)."""
    h = ix.astype(np.uint32) * np.uint32(0x8DA6B343)
    h ^= iy.astype(np.uint32) * np.uint32(0xD8163841)
    h ^= iz.astype(np.uint32) * np.uint32(0xCB1AB31F)
    h ^= np.uint32(seed)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return h.astype(np.float64) / 2.0**32


def _value_noise(q: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 3-D value noise in [0, 1]: hashed lattice values, smoothstep-trilinear interpolation."""
    cell = np.floor(q)
    f = q - cell
    w = f * f * (3.0 - 2.0 * f)
    i = cell.astype(np.int64)
    out = np.zeros(len(q))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = (
                    (w[:, 0] if dx else 1 - w[:, 0]) * (w[:, 1] if dy else 1 - w[:, 1])
                    * (w[:, 2] if dz else 1 - w[:, 2])
                )
                out += weight * _hash01(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def _albedo(tex: _Texture, q: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Linear-RGB albedo at local positions q (M, 3) seen through pixels ``footprint`` metres wide.

    Patterns fade to their mean as a pixel covers a whole period, so distant checks and stripes
    do not alias into noise (a cheap prefilter; labels are unaffected).
    """
    q = q * tex.freq
    if tex.kind == 0:
        pattern = np.zeros(len(q))
    elif tex.kind == 1:
        pattern = np.clip(0.5 + 2.0 * np.sin(2.0 * np.pi * (q @ tex.axis)), 0.0, 1.0)
    elif tex.kind == 2:
        # +0.5: the floor's local height is exactly 0, where floor() would flip with rounding noise.
        pattern = (np.floor(q + 0.5).astype(np.int64).sum(axis=1) % 2).astype(np.float64)
    else:
        pattern = 0.65 * _value_noise(q, tex.hash_seed) + 0.35 * _value_noise(2.03 * q, tex.hash_seed ^ 0x5F3759DF)
        pattern = np.clip(1.6 * pattern - 0.3, 0.0, 1.0)
    fade = np.clip((tex.freq * footprint - 0.25) / 0.75, 0.0, 1.0)
    pattern += fade * (0.5 - pattern)
    return tex.c1 + pattern[:, None] * (tex.c2 - tex.c1)


def _surface(
    scene: _Scene, p: np.ndarray, d: np.ndarray, sid: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """World unit normals and albedo at hit points (zero where sid == -1); ``spacing`` is the ray spacing in radians."""
    dist = np.linalg.norm(p - scene.cam_pos, axis=1) * spacing
    n = np.zeros_like(p)
    albedo = np.zeros_like(p)
    for k in range(2 + len(scene.shapes)):
        idx = np.flatnonzero(sid == k)
        if idx.size == 0:
            continue
        pk = p[idx]
        if k == _FLOOR:
            n[idx] = (0.0, 1.0, 0.0)
            local = pk
        elif k == _WALL:
            n[idx] = (0.0, 0.0, 1.0)
            local = pk
        else:
            s = scene.shapes[k - 2]
            nk = _NORMAL[s.kind](s, pk)
            n[idx] = nk / np.linalg.norm(nk, axis=1, keepdims=True)
            local = (pk - s.centre) @ s.rot.T
        footprint = dist[idx] / np.maximum(np.abs(_dot(n[idx], d[idx])), 0.05)
        albedo[idx] = _albedo(scene.textures[k], local, footprint)
    return n, albedo


def _shade(scene: _Scene, p: np.ndarray, n: np.ndarray, albedo: np.ndarray, sid: np.ndarray) -> np.ndarray:
    """Lambertian shading with ambient term and cast shadows; display RGB in [0, 1]."""
    lambert = n @ scene.light_dir
    lit = np.flatnonzero((sid >= 0) & (lambert > 0.0))
    if lit.size:
        t = np.full(lit.size, np.inf)
        _cast_shapes(scene.shapes, p[lit] + 1e-4 * n[lit], scene.light_dir, t, np.zeros(lit.size, np.int64))
        lambert[lit[np.isfinite(t)]] = 0.0
    light = scene.ambient + (1.0 - scene.ambient) * np.maximum(lambert, 0.0)
    rgb = albedo * light[:, None] * scene.light_col
    rgb[sid < 0] = (0.05, 0.05, 0.06)
    return np.clip(rgb, 0.0, 1.0) ** (1.0 / 2.2)


def _rays(scene: _Scene, size: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions, in world and camera frame, of rays through image points (x right, y down, in pixels)."""
    focal = size / (2.0 * scene.tan_half_fov)
    cam = np.stack([(x - size / 2.0) / focal, (size / 2.0 - y) / focal, -np.ones(x.shape)], axis=-1)
    cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
    return cam @ scene.cam_rot.T, cam


def _render_rays(
    scene: _Scene, d: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hit distance, surface id, world normal and display colour of camera rays d (M, 3) ``spacing`` radians apart."""
    t, sid = _trace(scene, d)
    p = scene.cam_pos + np.where(sid >= 0, t, 0.0)[:, None] * d
    n, albedo = _surface(scene, p, d, sid, spacing)
    return t, sid, n, _shade(scene, p, n, albedo, sid)


def _antialias(scene: _Scene, size: int, sid: np.ndarray, rgb: np.ndarray) -> None:
    """Replace the colour of pixels next to a change of surface by the mean of 4 sub-pixel rays."""
    grid = sid.reshape(size, size)
    border = np.zeros((size, size), bool)
    dh, dv = grid[:, 1:] != grid[:, :-1], grid[1:, :] != grid[:-1, :]
    border[:, 1:] |= dh
    border[:, :-1] |= dh
    border[1:, :] |= dv
    border[:-1, :] |= dv
    idx = np.flatnonzero(border)
    if idx.size == 0:
        return
    rows, cols = np.divmod(idx, size)
    offsets = np.array([0.25, 0.75])  # a 2 x 2 grid inside each pixel
    x = (cols[None, None, :] + offsets[None, :, None]).repeat(2, axis=0).ravel()
    y = (rows[None, None, :] + offsets[:, None, None]).repeat(2, axis=1).ravel()
    d, _ = _rays(scene, size, x, y)
    rgb[idx] = _render_rays(scene, d, scene.tan_half_fov / size)[3].reshape(4, idx.size, 3).mean(axis=0)


def _edges(key: np.ndarray) -> np.ndarray:
    """1 on each pixel whose right or lower neighbour has another label: one-pixel-thin boundaries."""
    e = np.zeros(key.shape, bool)
    e[:, :-1] |= key[:, :-1] != key[:, 1:]
    e[:-1, :] |= key[:-1, :] != key[1:, :]
    return e.astype(np.uint8)


def render_sample(seed: int, index: int, size: int) -> dict[str, Any]:
    """Render sample ``index`` of stream ``seed`` at ``size`` x ``size`` pixels (see the module doc for keys)."""
    if size < 2:
        raise ConfigError(f"SynthScenes size must be at least 2 pixels, got {size}")
    scene = _make_scene(seed, index)
    centres = np.arange(size) + 0.5
    d, cam = _rays(scene, size, np.tile(centres, size), np.repeat(centres, size))
    t, sid, n, rgb = _render_rays(scene, d, 2.0 * scene.tan_half_fov / size)
    hit = sid >= 0
    _antialias(scene, size, sid, rgb)

    hw = (size, size)
    semseg = scene.sem[sid].reshape(hw)
    instance = scene.inst[sid].reshape(hw)
    context = scene.ctx[sid].reshape(hw)
    parts = scene.part[sid].reshape(hw)
    normals = (n @ scene.cam_rot).astype(np.float32).reshape(size, size, 3)
    depth = np.where(hit, t * -cam[:, 2], 0.0).astype(np.float32).reshape(hw)

    figure = (instance == scene.figure_inst) & (scene.figure_inst > 0)
    parts_instances: list[dict[str, Any]] = []
    if figure.any():
        grid_sid = sid.reshape(hw)
        named = [
            (name, (grid_sid == k).astype(np.uint8))
            for k, name in enumerate(scene.part_names)
            if name and (grid_sid == k).any()
        ]
        parts_instances.append({"class_ind": PERSON_CLASS_IND, "mask": figure.astype(np.uint8), "parts": named})
        human_parts = parts
    else:
        human_parts = np.full(hw, 255, np.uint8)

    counts = np.bincount(instance.ravel(), minlength=2)
    counts[0] = 0
    sal = (instance == counts.argmax()) & (counts.max() > 0)
    present = np.zeros(len(SYNTH_CLASSES), np.float32)
    present[np.unique(semseg)] = 1.0
    return {
        "image": np.round(rgb * 255.0).astype(np.uint8).reshape(size, size, 3),
        "semseg": semseg,
        "human_parts": human_parts,
        "sal": sal.astype(np.uint8),
        "normals": normals,
        "depth": depth,
        "edge": _edges(context.astype(np.int64) * 65536 + instance),
        "instance": instance,
        "context": context,
        "parts_instances": parts_instances,
        "classes_present": present,
        "coarse_shape": _COARSE_LUT[semseg],
    }


# ---------------------------------------------------------------------------------- dataset


@register_dataset
class SynthScenes(torch.utils.data.Dataset):
    """SynthScenes as a dataset following the contract of ``vmt_adapter.data``.

    Sample i of ``split`` is ``render_sample(seed, SPLITS[split][i], size)``. ``raw(i)`` gives the
    numpy sample (``image`` uint8 HWC, the requested tasks, ``classes_present`` and ``id``) that a
    ``transform`` receives; without a transform, items are the contract tensors (plus
    ``classes_present`` as a float32 tensor, for scene-level multi-label pretraining).
    """

    NAME = "synth"
    PROVIDES = ("semseg", "human_parts", "sal", "normals", "depth", "edge", "coarse_shape")
    task_channels = {"semseg": len(SYNTH_CLASSES), "coarse_shape": len(COARSE_SHAPES)}
    CLASS_NAMES = {"semseg": SYNTH_CLASSES, "human_parts": HUMAN_PARTS, "coarse_shape": COARSE_SHAPES}
    NEEDS_ROOT = False  # rendered, not read
    SPLITS = tuple(SPLITS)  # the split names (the module's SPLITS maps each to its scene range)
    VERSION = VERSION
    EXPECTED_IDS: dict[str, int] = {}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return False

    @classmethod
    def build(cls, root: str | os.PathLike[str] | None, split: str, tasks: Sequence[str],
              transform: Callable[[dict[str, Any]], dict[str, Any]], size: int | None = None,
              num: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> SynthScenes:
        """``root`` is not used; ``size=None`` renders at the default size."""
        return cls(split, tasks, num=num, transform=transform, cache_dir=cache_dir or None,
                   **({} if size is None else {"size": size}))

    def __init__(
        self,
        split: str = "train",
        tasks: Sequence[str] = ("semseg", "human_parts", "sal", "normals"),
        size: int = 128,
        num: int | None = None,
        seed: int = 0,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown SynthScenes split {split!r}; choose from {', '.join(SPLITS)}")
        tasks = tuple(t.strip() for t in tasks.split(",")) if isinstance(tasks, str) else tuple(tasks)
        unknown = [t for t in tasks if t not in self.PROVIDES]
        if unknown:
            raise ConfigError(f"SynthScenes does not provide {', '.join(unknown)}; "
                              f"it provides {', '.join(self.PROVIDES)}")
        num = DEFAULT_NUM[split] if num is None else num
        if not 0 < num <= len(SPLITS[split]):
            raise ConfigError(f"SynthScenes num must be in 1..{len(SPLITS[split])} for split {split!r}, got {num}")
        if size < 2:
            raise ConfigError(f"SynthScenes size must be at least 2 pixels, got {size}")
        self.split, self.tasks, self.size, self.num, self.seed = split, tasks, size, num, seed
        self.transform = transform
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def __len__(self) -> int:
        return self.num

    def _cache_path(self, index: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{VERSION}_s{self.seed}_i{index}_r{self.size}.npz"

    def _render(self, index: int) -> dict[str, np.ndarray]:
        """The array outputs of ``render_sample``, through the on-disk cache when one is set."""
        if self.cache_dir is None:
            return render_sample(self.seed, index, self.size)
        try:
            with np.load(self._cache_path(index)) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or unreadable: render again
            pass
        return _render_to_cache(self.seed, index, self.size, self._cache_path(index))

    def prepare(self, workers: int = 1, progress: Callable[[int, int], None] | None = None) -> int:
        """Render every sample missing from the cache now, in ``workers`` processes, so that training reads
        files instead of ray casting in its loop; returns how many were rendered (0 without a cache)."""
        if self.cache_dir is None:
            return 0
        jobs = [(self.seed, index, self.size, path) for index in SPLITS[self.split][:self.num]
                if not (path := self._cache_path(index)).is_file()]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for done, _ in enumerate(pool.map(_render_job, jobs, chunksize=16), 1):
                    if progress:
                        progress(done, len(jobs))
        else:
            for done, job in enumerate(jobs, 1):
                _render_job(job)
                if progress:
                    progress(done, len(jobs))
        return len(jobs)

    def raw(self, i: int) -> dict[str, Any]:
        """Numpy sample i: ``image``, the requested tasks, ``classes_present`` and ``id``."""
        if not 0 <= i < self.num:
            raise IndexError(f"SynthScenes {self.split} index {i} out of range 0..{self.num - 1}")
        full = self._render(SPLITS[self.split][i])
        out: dict[str, Any] = {"image": full["image"]}
        out.update({t: full[t] for t in self.tasks})
        out["classes_present"] = full["classes_present"]
        out["id"] = f"synth_{self.split}_{i:06d}"
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.raw(i)
        if self.transform is not None:
            return self.transform(sample)
        # The identity geometry is a plain conversion to the contract tensors.
        out = apply_geometry(sample, Geometry(), (self.size, self.size))
        out["classes_present"] = torch.from_numpy(sample["classes_present"])
        return out


def _render_to_cache(seed: int, index: int, size: int, path: Path) -> dict[str, np.ndarray]:
    """Render one sample and store its arrays, uncompressed (reading is then a copy, not an inflate), atomically."""
    sample = {k: v for k, v in render_sample(seed, index, size).items() if isinstance(v, np.ndarray)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **sample)
        os.replace(tmp, path)  # atomic: readers never see a partial file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sample


def _render_job(job: tuple[int, int, int, Path]) -> None:
    _render_to_cache(*job)


def _bench(size: int, n: int, seed: int) -> None:
    """Images per second of ``render_sample`` and of dataset items, by wall clock and by CPU time.

    Both are printed because the machine may be shared: CPU time is what one core costs.
    """
    torch.set_num_threads(1)
    render_sample(seed, 0, size)  # warm-up
    ds = SynthScenes("train", size=size, num=n, seed=seed)
    for name, fn in (("render_sample", lambda i: render_sample(seed, i, size)), ("SynthScenes[i]", ds.__getitem__)):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            fn(i)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{name} at {size}x{size}: {n / wall:.1f} img/s wall clock, {n / cpu:.1f} img/s CPU time ({n} samples)")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vmt_adapter.data.synth --bench`` or ``--panel out.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="measure images per second")
    parser.add_argument("--panel", type=Path, help="write a PNG panel of one sample")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=200, help="samples to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    if args.bench:
        _bench(args.size, args.n, args.seed)
    if args.panel is not None:
        save_panel(render_sample(args.seed, args.index, args.size), args.panel)
    if not args.bench and args.panel is None:
        parser.print_help()


if __name__ == "__main__":
    main()
