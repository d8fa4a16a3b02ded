"""SynthStudio: object-centric studio renders with image-level labels, the upstream data of the
embedded backbone (``vmt pretrain``, ``docs/pretrain.md``).

Why it exists: ImageNet -> PASCAL-Context is a transfer across image distributions (object photos
to cluttered scenes) and across label kinds (one image-level class to dense maps). SynthStudio is
built to stand to SynthScenes as ImageNet stands to PASCAL: it shares only the ray caster and the
texture patterns with the downstream scenes, and differs in everything a backbone could latch on to.

- **Framing.** One large object floats at the centre, seen from any direction (above, below, the
  side), filling 45-80 % of the frame, with 0-2 small distractors behind it; SynthScenes shows 2-5
  objects standing on a floor before a wall, seen from eye height.
- **Background.** A sky-like backdrop (a vertical two-colour gradient under value-noise clouds)
  instead of a floor and a wall: no horizon seam, no ground plane, no cast shadows.
- **Light and palette.** A coloured key light and a coloured rim light from opposite sides, a
  specular highlight, a dim ambient term, and saturated colours (saturation 0.55-1); SynthScenes has
  one near-white light, matte surfaces and muted colours.
- **Object set and labels.** 60 fine classes: geometry (ellipsoid, box, cylinder, cone, capsule) x
  proportion (squat, even, tall) x surface pattern (plain, stripes, checks, noise), one label an
  image. Objects are rotated freely (a tilted cone, a lying cylinder). No articulated figure and no
  dense label of any kind: nothing of semseg, human parts, saliency, normals, depth or edges.

A sample is a pure function of ``(seed, index, size, VERSION)``. Images are rendered with 2 x 2
supersampling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..fileio import atomic_write
from .synth import _HIT, _NORMAL, _albedo, _colour, _Shape, _Texture, _value_noise, sphere_candidates

VERSION = "synthstudio-1"
GEOMETRIES = ("ellipsoid", "box", "cylinder", "cone", "capsule")
PROPORTIONS = ("squat", "even", "tall")
PATTERNS = ("plain", "stripes", "checks", "noise")  # the texture kinds 0..3 of ``synth._Texture``
CLASSES: list[str] = [f"{g}/{p}/{t}" for g in GEOMETRIES for p in PROPORTIONS for t in PATTERNS]
SPLITS: dict[str, range] = {"train": range(0, 1_000_000), "val": range(1_000_000, 1_100_000)}
# Height over width of each geometry at each proportion (squat, even, tall).
_ASPECT = {"ellipsoid": (0.45, 1.0, 2.2), "box": (0.4, 1.0, 2.5), "cylinder": (0.35, 1.0, 2.8),
           "cone": (0.5, 1.1, 2.8), "capsule": (1.3, 2.0, 3.6)}  # fmt: skip


@dataclass(frozen=True)
class _Posed:
    """A shape built upright at the origin (``shape``), placed by rotation ``rot`` (local -> world
    columns) and translation ``pos``; rays are cast in its own frame, so cylinders and cones tilt too."""

    shape: _Shape
    rot: np.ndarray
    pos: np.ndarray
    radius: float  # bounding sphere about ``pos``
    texture: _Texture


@dataclass(frozen=True)
class _Studio:
    cam_pos: np.ndarray
    cam_rot: np.ndarray  # columns: camera x, y, z in world (the camera looks along -z)
    tan_half_fov: float
    objects: list[_Posed]
    lights: list[tuple[np.ndarray, np.ndarray]]  # (unit direction towards the light, colour)
    ambient: float
    sky: tuple[np.ndarray, np.ndarray, np.ndarray, int]  # top colour, bottom colour, cloud colour, noise seed
    shininess: float


def _vivid(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour (linear RGB): SynthScenes draws saturation 0.15-0.9, the studio 0.55-1."""
    h, s, v = rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)) ** 2.2


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _object(rng: np.random.Generator, label: int, scale: float, pos: np.ndarray) -> _Posed:
    """Object of class ``label`` with bounding radius about ``scale``, centred at ``pos``."""
    geometry, proportion, pattern = CLASSES[label].split("/")
    aspect = _ASPECT[geometry][PROPORTIONS.index(proportion)] * rng.uniform(0.9, 1.1)
    width = 1.0 / np.hypot(1.0, aspect)  # half-width w and half-height a w inside a unit sphere
    w, h = scale * width, scale * width * aspect
    if geometry in ("ellipsoid", "box"):
        size = np.array([w * rng.uniform(0.85, 1.0), h, w * rng.uniform(0.85, 1.0)])
        shape = _Shape(geometry, np.zeros(3), np.eye(3), size, np.zeros(3), scale)
    elif geometry in ("cylinder", "cone"):  # upright with its base at local y = -h
        shape = _Shape(geometry, np.array([0.0, -h, 0.0]), np.eye(3), np.array([w, 2.0 * h]), np.zeros(3), scale)
    else:  # capsule: radius w, caps included in the height
        half = h - w  # every capsule aspect exceeds 1: a segment of positive length
        shape = _Shape("capsule", np.array([0.0, -half, 0.0]), np.eye(3), np.array([w]), np.zeros(3), scale,
                       end=np.array([0.0, half, 0.0]))
    axis = rng.normal(size=3)
    texture = _Texture(kind=PATTERNS.index(pattern), c1=_vivid(rng), c2=_colour(rng),
                       freq=float(rng.uniform(1.5, 3.5) / scale), axis=axis / np.linalg.norm(axis),
                       hash_seed=int(rng.integers(2**32)))
    return _Posed(shape, _random_rotation(rng), pos, scale, texture)


def _make_studio(seed: int, index: int) -> tuple[_Studio, int]:
    """Draw a studio image's content and its label; the only randomness of a sample."""
    rng = np.random.default_rng([seed, index, 0x57D10])  # a stream of its own, apart from SynthScenes'
    label = int(rng.integers(len(CLASSES)))
    half_fov = np.radians(rng.uniform(18.0, 28.0))
    fill = rng.uniform(0.45, 0.8)  # bounding radius over the half-height of the view
    view = rng.normal(size=3)
    view /= np.linalg.norm(view)  # any direction: from above, below or the side
    cam_pos = view / (fill * np.tan(half_fov))
    up = np.array([0.0, 1.0, 0.0]) if abs(view[1]) < 0.95 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, view)
    x /= np.linalg.norm(x)
    roll = rng.uniform(-0.5, 0.5)
    y = np.cross(view, x)
    x, y = np.cos(roll) * x + np.sin(roll) * y, np.cos(roll) * y - np.sin(roll) * x
    cam_rot = np.stack([x, y, view], axis=1)
    objects = [_object(rng, label, 1.0, rng.uniform(-0.12, 0.12, size=3))]
    for _ in range(int(rng.integers(0, 3))):  # small distractors behind the main object
        lateral = cam_rot[:, :2] @ rng.uniform(-1.6, 1.6, size=2)
        pos = lateral - view * rng.uniform(1.5, 3.0)
        objects.append(_object(rng, int(rng.integers(len(CLASSES))), rng.uniform(0.2, 0.4), pos))
    key = rng.normal(size=3)
    key /= np.linalg.norm(key)
    rim = -key + rng.normal(scale=0.4, size=3)
    lights = [(key, 0.5 + 0.7 * _vivid(rng) ** (1 / 2.2)), (rim / np.linalg.norm(rim), 0.5 * _vivid(rng) ** (1 / 2.2))]
    sky = (_vivid(rng), _vivid(rng), _colour(rng), int(rng.integers(2**32)))
    studio = _Studio(cam_pos, cam_rot, float(np.tan(half_fov)), objects, lights, float(rng.uniform(0.08, 0.22)),
                     sky, float(rng.uniform(8.0, 40.0)))
    return studio, label


def _hit(s: _Shape, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """SynthScenes' hit functions, plus the base disc that its cylinders and cones (standing on the
    floor, so never seen from below) leave open."""
    t = _HIT[s.kind](s, o, d)
    if s.kind not in ("cylinder", "cone"):
        return t
    ol = o - s.centre
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = -ol[1] / d[:, 1]
    xb, zb = ol[0] + tb * d[:, 0], ol[2] + tb * d[:, 2]
    return np.minimum(t, np.where((tb > 1e-6) & (xb * xb + zb * zb <= s.size[0] ** 2), tb, np.inf))


def _normal(s: _Shape, p: np.ndarray) -> np.ndarray:
    """Outward normals at local points ``p``; (0, -1, 0) on the base disc of a cylinder or cone."""
    n = _NORMAL[s.kind](s, p)
    if s.kind in ("cylinder", "cone"):
        n[np.abs(p[:, 1] - s.centre[1]) < 1e-7] = (0.0, -1.0, 0.0)
    return n


def _cast(objects: Sequence[_Posed], o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit distance and object index (-1: none) of rays from ``o`` (3,) along ``d`` (M, 3)."""
    t = np.full(len(d), np.inf)
    oid = np.full(len(d), -1)
    for k, ob in enumerate(objects):
        cand = sphere_candidates(ob.pos, ob.radius, o, d)
        if cand.size == 0:
            continue
        tk = _hit(ob.shape, (o - ob.pos) @ ob.rot, d[cand] @ ob.rot)  # rays in the object's frame
        closer = tk < t[cand]
        t[cand[closer]] = tk[closer]
        oid[cand[closer]] = k
    return t, oid


def _shade(studio: _Studio, d: np.ndarray, spacing: float) -> np.ndarray:
    """Display RGB in [0, 1] of camera rays ``d`` (M, 3), ``spacing`` radians apart."""
    t, oid = _cast(studio.objects, studio.cam_pos, d)
    top, bottom, cloud, noise_seed = studio.sky
    mix = (0.5 + 0.5 * d[:, 1:2])  # sky: gradient by elevation under value-noise clouds
    clouds = np.clip(1.8 * _value_noise(3.0 * d + 7.0, noise_seed) - 0.7, 0.0, 1.0)[:, None]
    rgb = (mix * top + (1.0 - mix) * bottom) * (1.0 - 0.6 * clouds) + 0.6 * clouds * cloud
    for k, ob in enumerate(studio.objects):
        idx = np.flatnonzero(oid == k)
        if idx.size == 0:
            continue
        p = studio.cam_pos + t[idx, None] * d[idx]
        local = (p - ob.pos) @ ob.rot
        n = _normal(ob.shape, local) @ ob.rot.T
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        footprint = t[idx] * spacing / np.maximum(np.abs(np.einsum("ij,ij->i", n, d[idx])), 0.05)
        albedo = _albedo(ob.texture, local - ob.shape.centre, footprint)
        colour = np.full((idx.size, 3), studio.ambient)
        spec = np.zeros((idx.size, 1))
        for direction, light in studio.lights:
            lambert = np.maximum(n @ direction, 0.0)[:, None]
            colour = colour + lambert * light
            half = direction - d[idx]
            half /= np.linalg.norm(half, axis=1, keepdims=True)
            spec += 0.35 * (lambert > 0) * np.maximum(np.einsum("ij,ij->i", n, half), 0.0)[:, None] ** studio.shininess
        rgb[idx] = albedo * colour + spec
    return np.clip(rgb, 0.0, 1.0) ** (1.0 / 2.2)


def render_studio(seed: int, index: int, size: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of stream ``seed`` at ``size`` x ``size`` (uint8 HWC) and its class id."""
    if size < 2:
        raise ConfigError(f"SynthStudio size must be at least 2 pixels, got {size}")
    studio, label = _make_studio(seed, index)
    sub = (np.arange(2 * size) + 0.5) / 2.0  # 2 x 2 rays a pixel
    focal = size / (2.0 * studio.tan_half_fov)
    x, y = np.tile(sub, 2 * size), np.repeat(sub, 2 * size)
    cam = np.stack([(x - size / 2.0) / focal, (size / 2.0 - y) / focal, -np.ones(x.shape)], axis=-1)
    d = cam @ studio.cam_rot.T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rgb = _shade(studio, d, studio.tan_half_fov / size).reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
    return np.round(rgb * 255.0).astype(np.uint8), label


def _render_range(args: tuple[int, Sequence[int], int]) -> tuple[np.ndarray, np.ndarray]:
    seed, indices, size = args
    out = [render_studio(seed, i, size) for i in indices]
    return np.stack([im for im, _ in out]), np.array([lb for _, lb in out], np.int64)


class SynthStudio(torch.utils.data.Dataset):
    """``num`` studio images of ``split`` held in memory: ``images`` uint8 (N, H, W, 3), ``labels`` (N,).

    Rendered once (in ``workers`` processes, ``progress(done, total)`` after each chunk) and kept in
    ``cache_dir`` as one ``.npz`` keyed by version, seed, split, size and count. Items are
    ``(image uint8 tensor HWC, label)``; the pretraining loop augments and normalises whole batches.
    """

    def __init__(self, split: str = "train", size: int = 64, num: int = 1000, seed: int = 0,
                 cache_dir: str | os.PathLike[str] | None = None, workers: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown SynthStudio split {split!r}; choose from {', '.join(SPLITS)}")
        if not 0 < num <= len(SPLITS[split]):
            raise ConfigError(f"SynthStudio num must be in 1..{len(SPLITS[split])} for split {split!r}, got {num}")
        if size < 2:
            raise ConfigError(f"SynthStudio size must be at least 2 pixels, got {size}")
        self.split, self.size, self.num, self.seed = split, size, num, seed
        path = Path(cache_dir) / f"{VERSION}_s{seed}_{split}_n{num}_r{size}.npz" if cache_dir else None
        if path is not None and path.is_file():
            with np.load(path) as f:
                self.images, self.labels = f["images"], f["labels"]
            return
        self.images, self.labels = self._render(workers, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, self._save)

    def _save(self, tmp: str | os.PathLike[str]) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, images=self.images, labels=self.labels)

    def _render(self, workers: int, progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray]:
        first = SPLITS[self.split][0]
        chunk = 250
        jobs = [(self.seed, range(first + a, first + min(a + chunk, self.num)), self.size)
                for a in range(0, self.num, chunk)]
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for part in pool.map(_render_range, jobs):
                    parts.append(part)
                    if progress:
                        progress(sum(len(p[1]) for p in parts), self.num)
        else:
            for job in jobs:
                parts.append(_render_range(job))
                if progress:
                    progress(sum(len(p[1]) for p in parts), self.num)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[i]), int(self.labels[i])


def save_grid(path: Path, rows: int = 4, columns: int = 8, size: int = 64, seed: int = 0) -> None:
    """A PNG of the first ``rows x columns`` training images, each enlarged 2x, captioned by class."""
    from PIL import Image, ImageDraw

    cell = 2 * size
    sheet = Image.new("RGB", (columns * cell, rows * (cell + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(rows * columns):
        image, label = render_studio(seed, SPLITS["train"][i], size)
        x, y = (i % columns) * cell, (i // columns) * (cell + 12)
        sheet.paste(Image.fromarray(image).resize((cell, cell), Image.NEAREST), (x, y))
        draw.text((x + 2, y + cell), CLASSES[label], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a PNG grid of SynthStudio training images.")
    parser.add_argument("--grid", type=Path, required=True, help="output PNG")
    save_grid(parser.parse_args().grid)
