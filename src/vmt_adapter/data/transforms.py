"""Joint geometric transforms from a raw numpy sample to the contract tensors.

A raw sample (what every dataset's ``raw(i)`` returns) holds ``"image"`` uint8 (H, W, 3), ``"id"``
and one array per task in the layout of ``vmt_adapter.tasks``' kinds: label maps uint8 (H, W) with
255 ignore, normals float32 (H, W, 3) with zero = ignore, depth float32 (H, W) with 0 = ignore.

Training augmentation follows the public recipe (Vandenhende's Multi-Task-Learning-PyTorch,
``data/custom_transforms.py``: ``RandomHorizontalFlip``, ``ScaleNRotate``, ``FixedResize``;
docs/design.md, section 5.2): flip with probability 1/2, scale in [0.75, 1.25], rotation in [-20, 20]
degrees about the image centre on a canvas of the input size, then resize to ``size`` x ``size``.
Here the three are composed into one affine map and every task is resampled once with it
(``torch.nn.functional.grid_sample``), so a label is never interpolated twice and all tasks share
exactly the same geometry.

Conventions this module fixes (keep them in step with SynthScenes and the loaders):

- Normals are camera-frame vectors with x to the right, y **up** in the image and z towards the
  camera, the project's frame for every dataset (SynthScenes renders it; the PASCAL and NYUD
  loaders convert their files' y-down frame, see ``pascal.FILE_NORMALS_TO_PROJECT``). Flipping
  negates x; rotating the image content by ``a`` degrees counter-clockwise on screen rotates (x, y)
  by ``a`` counter-clockwise. Pixel rows grow downwards, so the pixel map and the normal map are
  the same rotation conjugated by ``diag(1, -1)``. Resizing, even to another aspect ratio, only
  changes the focal lengths of the camera, so it leaves camera-frame normals unchanged.
- Depth is divided by the zoom factor, as in the reference ``ScaleNRotate``: a zoomed-in object
  looks as it would from a camera that much closer.
- Outside the source image (``pad="ignore"``, the project's default) labels are 255, normals and
  depth 0, and the image is padded with the ImageNet mean (zero after normalisation), so padding
  never counts as a label. ``pad="zero"`` is the public code's ``warpAffine`` fill: every array 0,
  i.e. labels become background / not salient and the image black.
- A task whose empty map means "not annotated" (``TaskSpec.empty_is_unlabelled``: human parts) is
  ignored whole when its map has no label but background: always when the source map has none (so a
  zero pad cannot turn an unannotated image into supervised background), and with ``emptied="ignore"``
  also when the geometry crops every part away, as the public code's ``AddIgnoreRegions`` does after
  its warp. ``emptied="keep"`` (the project's default) supervises such a crop as background, which it is.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..kinds import kind_of
from ..kinds.base import warp
from ..tasks import IGNORE_INDEX, TASKS, TaskSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PADS = ("ignore", "zero")  # what fills the pixels outside the source image (see the module doc)
EMPTIED = ("keep", "ignore")  # what becomes of an annotated map the geometry leaves without a label (module doc)


@dataclass(frozen=True)
class Geometry:
    """The random part of one training transform: shared by every task of a sample."""

    flip: bool = False
    scale: float = 1.0
    angle: float = 0.0  # degrees, counter-clockwise on screen

    def pixel_map(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
        """3x3 map from input to output pixel-index coordinates (x = column, y = row, pixel centres).

        Flip, then scale and rotate about the centre on a canvas of the input size, then resize.
        """
        h, w = in_hw
        oh, ow = out_hw
        flip = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if self.flip else np.eye(3)
        c, s = np.cos(np.radians(self.angle)), np.sin(np.radians(self.angle))
        centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        spin = np.eye(3)
        spin[:2, :2] = self.scale * np.array([[c, s], [-s, c]])  # counter-clockwise on screen (rows grow down)
        spin[:2, 2] = centre - spin[:2, :2] @ centre
        sx, sy = ow / w, oh / h
        resize = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return resize @ spin @ flip

    def normal_map(self) -> np.ndarray:
        """3x3 rotation (or reflection) applied to camera-frame normals (x right, y up)."""
        c, s = np.cos(np.radians(self.angle)), np.sin(np.radians(self.angle))
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return rot @ np.diag([-1.0 if self.flip else 1.0, 1.0, 1.0])


def sample_rng(seed: int, epoch: int, key: str | int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, sample key): same augmentation on every run and worker."""
    k = zlib.crc32(key.encode()) if isinstance(key, str) else int(key)
    return np.random.default_rng([seed, epoch, k])


class JointTransform:
    """Raw numpy sample -> contract tensors, with the same geometry for every task.

    ``train=True`` draws a ``Geometry`` per call from ``rng`` (or from ``sample_rng(seed, epoch,
    sample["id"])`` when none is given; call ``set_epoch`` so epochs differ). ``size=None`` keeps
    the input resolution (evaluation at the original size, as Vandenhende's code does).
    """

    def __init__(
        self,
        train: bool,
        size: int | None,
        seed: int = 0,
        scales: tuple[float, float] = (0.75, 1.25),
        max_angle: float = 20.0,
        flip_prob: float = 0.5,
        pad: str = "ignore",
        emptied: str = "keep",
    ) -> None:
        if size is not None and size < 1:
            raise ConfigError(f"transform size must be a positive integer or None, got {size}")
        if train and size is None:
            raise ConfigError("a training transform needs a size (batches must share one resolution)")
        if pad not in PADS:
            raise ConfigError(f"data.pad {pad!r}: choose from {', '.join(PADS)}")
        if emptied not in EMPTIED:
            raise ConfigError(f"data.emptied {emptied!r}: choose from {', '.join(EMPTIED)}")
        self.train, self.size, self.seed, self.pad, self.emptied = train, size, seed, pad, emptied
        self.scales, self.max_angle, self.flip_prob = scales, max_angle, flip_prob
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream; DataLoader workers pick it up when they are (re)started."""
        self.epoch = epoch

    def draw(self, rng: np.random.Generator) -> Geometry:
        """One random geometry in the recipe's ranges."""
        return Geometry(
            flip=bool(rng.random() < self.flip_prob),
            scale=float(rng.uniform(*self.scales)),
            angle=float(rng.uniform(-self.max_angle, self.max_angle)),
        )

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        h, w = sample["image"].shape[:2]
        if self.train:
            geometry = self.draw(rng if rng is not None else sample_rng(self.seed, self.epoch, sample["id"]))
        else:
            geometry = Geometry()
        out_hw = (h, w) if self.size is None else (self.size, self.size)
        return apply_geometry(sample, geometry, out_hw, self.pad, self.emptied)

    def __repr__(self) -> str:
        return f"JointTransform(train={self.train}, size={self.size}, seed={self.seed})"


def build_transform(train: bool, size: int | None, seed: int = 0, pad: str = "ignore",
                    emptied: str = "keep") -> JointTransform:
    """The project's transform: recipe augmentation when ``train``, plain resize (or none) otherwise."""
    return JointTransform(train=train, size=size, seed=seed, pad=pad, emptied=emptied)


def apply_geometry(sample: dict[str, Any], geometry: Geometry, out_hw: tuple[int, int],
                   pad: str = "ignore", emptied: str = "keep") -> dict[str, Any]:
    """Resample every array of ``sample`` with one geometry and convert it to the contract tensors.

    Keys that are not the image or a task (``"id"`` and the like) pass through unchanged; ``pad``
    says what fills the pixels outside the source and ``emptied`` what becomes of a map the geometry
    leaves without a label (see the module doc).
    """
    image = sample["image"]
    in_hw = image.shape[:2]
    identity = geometry == Geometry() and tuple(out_hw) == tuple(in_hw)
    grid = None if identity else _grid(geometry.pixel_map(in_hw, out_hw), in_hw, out_hw)
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if key == "image" and pad == "zero":  # black outside: warp first, then normalise
            out[key] = _normalise(warp(_unit_image(value), grid, "bilinear"))
        elif key == "image":
            out[key] = warp(_normalise(_unit_image(value)), grid, "bilinear")
        elif key in TASKS:
            out[key] = _task(TASKS[key], value, geometry, grid, in_hw, pad)
            if TASKS[key].empty_is_unlabelled and not _labelled(out[key]) and (emptied == "ignore" or
                                                                              not _labelled(value)):
                out[key] = torch.full_like(out[key], IGNORE_INDEX)
        else:
            out[key] = value
    return out


def _task(spec: TaskSpec, value: np.ndarray, geometry: Geometry, grid: torch.Tensor | None,
          in_hw: tuple[int, int], pad: str = "ignore") -> torch.Tensor:
    """One task array in its raw layout -> its contract tensor, by its kind's rule."""
    kind = kind_of(spec)
    expected = tuple(in_hw) + kind.raw_channels
    if value.shape != expected:
        raise DataError(f"sample {spec.name!r} has shape {value.shape}, expected {expected} to match the image")
    return kind.resample(value, geometry, grid, pad)


def _labelled(labels: np.ndarray | torch.Tensor) -> bool:
    """Whether a label map holds any label besides background (0) and ignore."""
    return bool(((labels != 0) & (labels != IGNORE_INDEX)).any())


def _unit_image(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"sample image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a (3, H, W) image in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def _grid(pixel_map: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """Sampling grid (1, oh, ow, 2) for ``grid_sample`` (align_corners=False) from an input->output pixel map."""
    inverse = np.linalg.inv(pixel_map)
    oh, ow = out_hw
    ys, xs = np.meshgrid(np.arange(oh, dtype=np.float64), np.arange(ow, dtype=np.float64), indexing="ij")
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ inverse.T  # oh, ow, 3
    h, w = in_hw
    gx = (2.0 * pts[..., 0] + 1.0) / w - 1.0
    gy = (2.0 * pts[..., 1] + 1.0) / h - 1.0
    return torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))[None]
