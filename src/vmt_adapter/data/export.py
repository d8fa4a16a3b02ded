"""Write SynthScenes in the exact on-disk layouts of PASCAL-Context multi-task and NYUD-v2.

Why: the real loaders (``pascal.py``, ``nyud.py``) must be exercised end to end on real file
formats (jpg, png, MATLAB v5 ``.mat``) without the real datasets (docs/design.md, section 7). Sample i of
the exported ``train`` (``val``) split is SynthScenes ``train`` (``val``) sample i, with the same id.

PASCAL layout (docs/design.md, section 5.1): ``JPEGImages/<id>.jpg`` (quality 95, 4:4:4),
``ImageSets/Context/{train,val}.txt``, ``semseg/pascal-context/<id>.png``, ``human_parts/<id>.mat``,
``sal_distill/<id>.png`` (0 / 255), ``normals_distill/<id>.png`` (RGB ``round((n + 1) / 2 * 255)``),
``pascal-context/trainval/<id>.mat`` (``LabelMap`` = the synth ``context`` ids). NYUD layout:
``images/<id>.jpg``, ``segmentation/<id>.png`` (class + 1, 0 = ignore), ``depth/``, ``normals/``,
``edge/<id>.npy``, ``gt_sets/{train,val}.txt``. Normals are written in the files' frame (y down,
see ``pascal.FILE_NORMALS_TO_PROJECT``), so the loaders hand back exactly the synth vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import writing
from ..tasks import IGNORE_INDEX
from .pascal import FILE_NORMALS_TO_PROJECT
from .synth import SPLITS, SYNTH_CLASSES, render_sample

# Every folder of each layout, created up front; the first one listed holds the split files.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "pascal": ("ImageSets/Context", "JPEGImages", "semseg/pascal-context", "human_parts", "sal_distill",
               "normals_distill", "pascal-context/trainval"),
    "nyud": ("gt_sets", "images", "segmentation", "depth", "normals", "edge"),
}  # fmt: skip
# Quality 95 as asked; full-resolution chroma (4:4:4) because at the small synth sizes 4:2:0
# subsampling alone more than doubles the error on sharp colour edges.
JPEG = {"quality": 95, "subsampling": 0}

_OBJECT_DTYPE = [("class", object), ("class_ind", object), ("mask", object), ("parts", object)]
_PART_DTYPE = [("part_name", object), ("mask", object)]


# A ray-cast sample holds several float maps of size x size: beyond this it does not fit in memory.
MAX_EXPORT_SIZE = 4096


def export_synth(
    out: str | Path, num: int, size: int, seed: int = 0, layout: str = "pascal", val_fraction: float = 0.2,
    overwrite: bool = False,
) -> dict[str, list[str]]:
    """Export ``num`` SynthScenes samples of ``size`` px, ``val_fraction`` of them as ``val``; returns ids per split.

    A non-empty ``out`` is refused unless ``overwrite``: its split files would be replaced.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown export layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if num < 1 or not 2 <= size <= MAX_EXPORT_SIZE:
        raise ConfigError(f"export needs num >= 1 and size in 2..{MAX_EXPORT_SIZE}, got num={num}, size={size}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(num * val_fraction)
    if num - n_val < 1:
        raise ConfigError(f"exporting {num} sample(s) with val_fraction {val_fraction} leaves the train split empty")
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} is not empty; export into a new folder, or pass --overwrite to replace its split "
                          "files and samples")
    for folder in LAYOUTS[layout]:
        (out / folder).mkdir(parents=True, exist_ok=True)
    write = _write_pascal if layout == "pascal" else _write_nyud
    ids: dict[str, list[str]] = {"train": [], "val": []}
    with tqdm(total=num, desc=f"export {layout} to {out}", unit="img") as bar:
        for split, count in (("train", num - n_val), ("val", n_val)):
            for i in range(count):
                sample_id = f"synth_{split}_{i:06d}"  # the id SynthScenes gives sample i of this split
                sample = render_sample(seed, SPLITS[split][i], size)
                with writing(f"sample {sample_id} under {out}"):
                    write(out, sample_id, sample)
                ids[split].append(sample_id)
                bar.update()
    for split, split_ids in ids.items():
        with writing(str(out / LAYOUTS[layout][0] / f"{split}.txt")):
            (out / LAYOUTS[layout][0] / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
    return ids


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3) -> the distilled-normals PNG encoding ``round((n + 1) / 2 * 255)``."""
    return np.round((normals.astype(np.float64) + 1.0) / 2.0 * 255.0).clip(0, 255).astype(np.uint8)


def parts_annotation(sample_id: str, sample: dict[str, Any]) -> dict[str, np.ndarray]:
    """A PASCAL-Part ``anno`` struct: the figure (class_ind 15, with parts) and every other visible object.

    MATLAB struct arrays are numpy structured arrays of objects; ``savemat`` writes them so that
    ``loadmat(f)['anno'][0][0][1][0]`` is the 1 x n object list, as in the real files. Non-person
    objects carry their SynthScenes class name and id as ``class`` / ``class_ind`` (never 15) and an
    empty part list, like unannotated PASCAL-Part objects.
    """
    objects: list[tuple[Any, ...]] = []
    persons = np.zeros(sample["instance"].shape, bool)
    for person in sample["parts_instances"]:
        parts = np.zeros((1, len(person["parts"])), dtype=_PART_DTYPE)
        for k, (name, mask) in enumerate(person["parts"]):
            parts[0, k] = (name, mask.astype(np.uint8))
        class_ind = np.array([[person["class_ind"]]], np.uint8)
        objects.append(("person", class_ind, person["mask"].astype(np.uint8), parts))
        persons |= person["mask"].astype(bool)
    for inst in np.unique(sample["instance"][~persons & (sample["instance"] > 0)]):
        mask = sample["instance"] == inst
        cls = int(np.bincount(sample["semseg"][mask]).argmax())
        objects.append((SYNTH_CLASSES[cls], np.array([[cls]], np.uint8), mask.astype(np.uint8), np.zeros((0, 0))))
    table = np.zeros((1, len(objects)), dtype=_OBJECT_DTYPE)
    for j, obj in enumerate(objects):
        table[0, j] = obj
    anno = np.zeros((1, 1), dtype=[("imname", object), ("objects", object)])
    anno[0, 0] = (sample_id, table)
    return {"anno": anno}


def _write_pascal(root: Path, sample_id: str, sample: dict[str, Any]) -> None:
    Image.fromarray(sample["image"]).save(root / "JPEGImages" / f"{sample_id}.jpg", **JPEG)
    Image.fromarray(sample["semseg"].astype(np.uint8)).save(root / "semseg" / "pascal-context" / f"{sample_id}.png")
    parts = parts_annotation(sample_id, sample)
    scipy.io.savemat(root / "human_parts" / f"{sample_id}.mat", parts, do_compression=True)
    Image.fromarray((sample["sal"] > 0).astype(np.uint8) * 255).save(root / "sal_distill" / f"{sample_id}.png")
    normals = encode_normals(sample["normals"] * FILE_NORMALS_TO_PROJECT)
    Image.fromarray(normals).save(root / "normals_distill" / f"{sample_id}.png")
    label_map = {"LabelMap": sample["context"].astype(np.uint16)}
    scipy.io.savemat(root / "pascal-context" / "trainval" / f"{sample_id}.mat", label_map, do_compression=True)


def _write_nyud(root: Path, sample_id: str, sample: dict[str, Any]) -> None:
    semseg = sample["semseg"].astype(np.int64)
    stored = np.where(semseg == IGNORE_INDEX, 0, semseg + 1).astype(np.uint8)
    Image.fromarray(sample["image"]).save(root / "images" / f"{sample_id}.jpg", **JPEG)
    Image.fromarray(stored).save(root / "segmentation" / f"{sample_id}.png")
    np.save(root / "depth" / f"{sample_id}.npy", sample["depth"].astype(np.float32))
    np.save(root / "normals" / f"{sample_id}.npy", (sample["normals"] * FILE_NORMALS_TO_PROJECT).astype(np.float32))
    np.save(root / "edge" / f"{sample_id}.npy", sample["edge"].astype(np.uint8))
