"""NYUD-v2 multi-task (semseg 40, depth, normals, edge) in the public reference layout.

Layout and rules from docs/design.md, section 6, checked against Multi-Task-Learning-PyTorch
``data/nyud.py``: ``images/<id>.jpg``, ``segmentation/<id>.png`` (0 = unlabelled -> 255 ignore,
1..40 -> 0..39), ``depth/<id>.npy`` (metres, 0 invalid), ``normals/<id>.npy`` (H x W x 3),
``edge/<id>.npy`` (binary), ids in ``gt_sets/{train,val}.txt``. Read-only, like the PASCAL loader;
normals are turned from the files' y-down frame into the project's y-up one (see ``pascal.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..tasks import IGNORE_INDEX
from .labels import NYUD_CLASSES
from .pascal import FILE_NORMALS_TO_PROJECT, FolderDataset, check_labels, check_shape, read_image, read_npy, read_png
from .registry import register_dataset

NUM_CLASSES = 40


@register_dataset
class NYUDv2MT(FolderDataset):
    """NYUD-v2 multi-task: semseg (40 classes, no background), depth, normals, edge."""

    NAME = "nyud"
    PROVIDES = ("semseg", "depth", "normals", "edge")
    CLASS_NAMES = {"semseg": NYUD_CLASSES}
    EXPECTED_IDS = {"train": 795, "val": 654}  # docs/design.md, section 6
    MARKER = "gt_sets"
    LAYOUT = "images/, segmentation/, depth/, normals/, edge/, gt_sets/"
    task_channels = {"semseg": NUM_CLASSES}
    FOLDERS = {
        "semseg": ("segmentation", ".png"),
        "depth": ("depth", ".npy"),
        "normals": ("normals", ".npy"),
        "edge": ("edge", ".npy"),
    }

    def split_file(self, split: str) -> Path:
        return self.root / "gt_sets" / f"{split}.txt"

    def files(self, sample_id: str) -> dict[str, Path]:
        files = {"image": self.root / "images" / f"{sample_id}.jpg"}
        for task in self.tasks:
            folder, ext = self.FOLDERS[task]
            files[task] = self.root / folder / f"{sample_id}{ext}"
        return files

    def decode(self, files: dict[str, Path]) -> dict[str, np.ndarray]:
        image = read_image(files["image"])
        hw = image.shape[:2]
        out = {"image": image}
        if "semseg" in files:
            stored = read_png(files["semseg"], "segmentation").astype(np.int64)
            check_shape(stored, hw, files["semseg"], "segmentation")
            check_labels(stored, NUM_CLASSES + 1, files["semseg"], "segmentation", ignore=None)
            out["semseg"] = np.where(stored == 0, IGNORE_INDEX, stored - 1).astype(np.uint8)
        if "depth" in files:
            depth = _array(files["depth"], "depth", hw, ndim=2)
            # Checked after the float32 cast: a float64 value beyond float32's range would become inf.
            with np.errstate(over="ignore", invalid="ignore"):
                depth = depth.astype(np.float32)
            if not np.isfinite(depth).all() or (depth < 0).any():
                raise DataError(f"{files['depth']}: depth must be finite and >= 0 in float32 (metres, 0 = invalid)")
            out["depth"] = depth
        if "normals" in files:
            normals = _array(files["normals"], "normals", hw, ndim=3)
            if normals.shape[2] != 3:
                raise DataError(f"{files['normals']}: normals must be H x W x 3, got shape {normals.shape}")
            if not np.isfinite(normals).all():
                raise DataError(f"{files['normals']}: normals hold NaN or infinite values")
            out["normals"] = normals.astype(np.float32) * FILE_NORMALS_TO_PROJECT
        if "edge" in files:
            edge = _array(files["edge"], "edge", hw, ndim=2)
            if not np.isin(edge, (0, 1)).all():
                raise DataError(f"{files['edge']}: edge values must be 0 or 1")
            out["edge"] = edge.astype(np.uint8)
        return out


def _array(path: Path, what: str, hw: tuple[int, int], ndim: int) -> np.ndarray:
    """A numeric ``.npy`` map of the image's size with ``ndim`` dimensions."""
    arr = read_npy(path, what)
    if np.iscomplexobj(arr):
        raise DataError(f"{path}: {what} holds complex numbers (dtype {arr.dtype}); expected real values")
    if arr.ndim != ndim or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{path}: {what} has shape {arr.shape}, dtype {arr.dtype}; expected a {ndim}-D numeric array")
    check_shape(arr, hw, path, what)
    return arr
