"""PASCAL-Context multi-task (Vandenhende et al. / MTLoRA format) and the shared on-disk dataset machinery.

Layout and decoding rules are docs/design.md, section 5.1, checked against the public reference loader
(Multi-Task-Learning-PyTorch, ``data/pascal_context.py``, itself from facebookresearch/astmt).
Every file is validated (readable, same size as the image, labels in range) and a problem raises a
``DataError`` naming the file. The loader only reads: nothing is ever written under ``root`` and
nothing is cached, so a read-only or shared dataset folder is safe.

``FolderDataset`` holds what PASCAL and NYUD share (split files, existence checks, ``skip_bad``,
the transform); ``nyud.py`` builds on it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.io
from PIL import Image
from scipy import ndimage
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..tasks import IGNORE_INDEX, TASKS, parse_task_names
from .labels import HUMAN_PARTS, VOC_CLASSES
from .registry import register_dataset
from .transforms import build_transform

T = TypeVar("T")

PERSON_CLASS = 15  # VOC class index of "person" in PASCAL-Part ``class_ind``
# PASCAL-Part person part name -> one of the 6 parts (0 = background). Reference: HUMAN_PART[6].
HUMAN_PARTS_6 = {
    **dict.fromkeys(("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye"), 1),
    **dict.fromkeys(("neck", "torso"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}
# Benchmark normals files store (x right, y down, z towards the camera): NYU's encoding ("more green
# downwards"), and the only frame in which the reference ``ScaleNRotate`` (new in-plane angle
# ``atan2(x, y) + rot``, with OpenCV's counter-clockwise ``rot``) turns normals with the image. The
# package works in (x right, y up, z towards the camera), as SynthScenes; loaders and the exporter
# multiply by this factor, which is its own inverse. Change it here if real files prove otherwise
# (on NYUD, the inverse-depth check of ``tests/test_transforms.py`` settles it).
FILE_NORMALS_TO_PROJECT = np.array([1.0, -1.0, 1.0], dtype=np.float32)
# A decoded normal shorter than this can only come from an encoded zero vector (128, 128, 128):
# it is ignore, not a direction (project decision; real distilled normals decode to norm ~1).
MIN_DECODED_NORM = 0.5


# --------------------------------------------------------------------------------------------
# Package data


@cache
def normals_valid_classes() -> np.ndarray:
    """The 170 context ids on which distilled normals are kept (package data, see resources/README.md)."""
    text = resources.files("vmt_adapter").joinpath("resources/pascal_context_normals_valid_classes.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return np.array(sorted(int(r[0]) for r in rows), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Reading and checking files


def read_file(path: Path, reader: Callable[[Path], T], what: str) -> T:
    """Run ``reader(path)``; any decoder failure becomes a one-line ``DataError`` naming the file."""
    try:
        return reader(path)
    except DataError:
        raise
    except Exception as exc:  # PIL, scipy.io and numpy raise many unrelated types for bad files
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: cannot read {what} ({type(exc).__name__}: {detail})") from exc


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), whatever the file's own mode."""
    return read_file(path, lambda p: np.asarray(Image.open(p).convert("RGB")), "image")


def read_png(path: Path, what: str, channels: int | None = None) -> np.ndarray:
    """A PNG's stored values (palette indices are kept, never converted), with the expected channel count."""
    arr = read_file(path, lambda p: np.asarray(Image.open(p)), what)
    ok = arr.ndim == 2 if channels is None else arr.ndim == 3 and arr.shape[2] == channels
    if not ok:
        expected = "single-channel" if channels is None else f"{channels}-channel"
        raise DataError(f"{path}: {what} PNG has shape {arr.shape}, expected a {expected} image")
    return arr


def read_npy(path: Path, what: str) -> np.ndarray:
    """A ``.npy`` array (never unpickled)."""
    return read_file(path, lambda p: np.load(p, allow_pickle=False), what)


def check_shape(arr: np.ndarray, hw: tuple[int, int], path: Path, what: str) -> None:
    """Every task map must have the image's height and width."""
    if tuple(arr.shape[:2]) != tuple(hw):
        raise DataError(
            f"{path}: {what} is {arr.shape[0]}x{arr.shape[1]} (HxW), expected {hw[0]}x{hw[1]} like its image"
        )


def check_labels(
    labels: np.ndarray, num_classes: int, path: Path, what: str, ignore: int | None = IGNORE_INDEX
) -> np.ndarray:
    """Labels must be class ids below ``num_classes`` or ``ignore``; returns them as uint8."""
    bad = (labels >= num_classes) & (labels != ignore) | (labels < 0)
    if bad.any():
        allowed = f"0..{num_classes - 1}" + ("" if ignore is None else f" or {ignore}")
        raise DataError(f"{path}: {what} value {labels[bad].flat[0]} out of range (expected {allowed})")
    return labels.astype(np.uint8)


def read_ids(path: Path) -> list[str]:
    """Sample ids of a split file, one per line."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    ids = [line.strip() for line in read_file(path, Path.read_text, "split file").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path}: split file lists no ids")
    counts = Counter(ids)
    repeated = [i for i, n in counts.items() if n > 1]
    if repeated:  # a repeated id would count its image several times in every metric
        raise DataError(f"{path}: id {repeated[0]!r} is listed {counts[repeated[0]]} times"
                        + (f" ({len(repeated) - 1} more ids repeated)" if len(repeated) > 1 else ""))
    return ids


def check_tasks(tasks: str | Sequence[str], provides: Sequence[str], dataset: str) -> list[str]:
    """Requested task names, all of which the dataset must provide."""
    names = parse_task_names(tasks)
    missing = [t for t in names if t not in provides]
    if missing:
        raise ConfigError(f"{dataset} does not provide {', '.join(missing)}; it provides {', '.join(provides)}")
    return names


# --------------------------------------------------------------------------------------------
# Shared dataset machinery


class FolderDataset(Dataset):
    """A multi-task dataset stored as one file per (sample, task) under ``root``.

    Subclasses give the layout (``split_file``, ``files``) and the decoding (``decode``).
    ``skip_bad=True`` drops ids with missing files up front and, when a file turns out to be
    unreadable or invalid at load time, serves the next good sample in its place (so the length
    never changes under a DataLoader); both warn, and ``skipped`` lists the ids concerned (per
    process: DataLoader workers keep their own list).
    """

    NAME: str = ""  # the registry key (``data.name``)
    PROVIDES: tuple[str, ...] = ()
    LAYOUT: str = ""  # one-line description of the expected folder, for error messages
    task_channels: dict[str, int] = {}
    CLASS_NAMES: dict[str, list[str]] = {}
    NEEDS_ROOT = True
    SPLITS: tuple[str, ...] | None = None  # the folder's split files say
    VERSION: str | None = None
    EXPECTED_IDS: dict[str, int] = {}  # split -> ids in the public release
    MARKER = ""  # a folder under the root that identifies the layout (``detect``)

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like this dataset's folder."""
        return bool(cls.MARKER) and (root / cls.MARKER).is_dir()

    @classmethod
    def build(cls, root: str | Path | None, split: str, tasks: Sequence[str],
              transform: Callable[[dict[str, Any]], dict[str, Any]], size: int | None = None,
              num: int | None = None, cache_dir: str | Path | None = None) -> FolderDataset:
        """The dataset for the engine: the first ``num`` ids of ``split`` (``size`` and ``cache_dir`` are the
        transform's and a generator's business)."""
        if root is None:
            raise ConfigError(f"dataset {cls.NAME!r} needs a root folder (data.root)")
        dataset = cls(root, split, tasks, transform=transform)
        return dataset if num is None else dataset.head(num)

    def __init__(
        self,
        root: str | Path,
        split: str,
        tasks: str | Sequence[str],
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        name = type(self).__name__
        if not self.root.is_dir():
            raise DataError(f"{self.root}: {name} root not found; expected a folder with {self.LAYOUT}")
        self.tasks = check_tasks(tasks, self.PROVIDES, name)
        self.split = split
        self.transform = transform if transform is not None else build_transform(train=False, size=None)
        self.skip_bad = skip_bad
        self.skipped: list[str] = []
        split_file = self.split_file(split)
        self.ids = [i for i in read_ids(split_file) if self._complete(i, split_file)]
        if self.skipped:
            warnings.warn(f"{name}: skipped {len(self.skipped)} id(s) of {split_file} with missing files", stacklevel=2)
        if not self.ids:
            raise DataError(f"{split_file}: no sample has all the files of tasks {','.join(self.tasks)}")

    def split_file(self, split: str) -> Path:
        """The text file listing the ids of ``split``."""
        raise NotImplementedError

    def files(self, sample_id: str) -> dict[str, Path]:
        """Every file the requested tasks need for one sample, by role (``"image"`` included)."""
        raise NotImplementedError

    def decode(self, files: dict[str, Path]) -> dict[str, np.ndarray]:
        """Read and check one sample's files into the raw numpy layout of ``transforms``."""
        raise NotImplementedError

    def _complete(self, sample_id: str, split_file: Path) -> bool:
        missing = [p for p in self.files(sample_id).values() if not p.is_file()]
        if not missing:
            return True
        if not self.skip_bad:
            raise DataError(f"{missing[0]}: file not found (id {sample_id!r} listed in {split_file})")
        self.skipped.append(sample_id)
        return False

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, num: int) -> FolderDataset:
        """Keep only the first ``num`` ids (quick runs and smoke tests); returns ``self``."""
        if num < 1:
            raise ConfigError(f"{type(self).__name__}: num must be at least 1, got {num}")
        self.ids = self.ids[:num]
        return self

    def raw(self, index: int) -> dict[str, Any]:
        """The decoded numpy sample (requested tasks, ``"image"`` and ``"id"``), before any transform.

        With ``skip_bad``, a sample whose files fail to decode is replaced by the next good one.
        """
        start = range(len(self.ids))[index]  # IndexError outside the split, negatives as for lists
        for offset in range(len(self.ids)):
            sample_id = self.ids[(start + offset) % len(self.ids)]
            try:
                sample: dict[str, Any] = self.decode(self.files(sample_id))
            except DataError as exc:
                if not self.skip_bad:
                    raise
                if sample_id not in self.skipped:
                    self.skipped.append(sample_id)
                warnings.warn(f"skipping bad sample ({exc}); {len(self.skipped)} skipped so far", stacklevel=2)
                continue
            sample["id"] = sample_id
            return sample
        raise DataError(f"{self.split_file(self.split)}: no readable sample left")

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.transform(self.raw(index))


# --------------------------------------------------------------------------------------------
# PASCAL-Context specifics


def _thinning_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of Guo & Hall (1989) thinning, algorithm A1, for the two sub-iterations.

    Same algorithm and neighbour coding as ``skimage.morphology.thin``, which the reference loader
    calls; skimage is not a dependency of this project, so it is re-derived here. Bit i of the
    neighbourhood code is the i-th neighbour counter-clockwise from the east one.
    """
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1 == 1
    crossings = sum(~bits[:, i] & (bits[:, i + 1] | bits[:, (i + 2) % 8]) for i in (0, 2, 4, 6))
    n1 = sum(bits[:, k] | bits[:, k - 1] for k in (1, 3, 5, 7))
    n2 = sum(bits[:, k] | bits[:, (k + 1) % 8] for k in (1, 3, 5, 7))
    g12 = (crossings == 1) & np.isin(np.minimum(n1, n2), (2, 3))
    g3 = ~((bits[:, 1] | bits[:, 2] | ~bits[:, 7]) & bits[:, 0])
    g3p = ~((bits[:, 5] | bits[:, 6] | ~bits[:, 3]) & bits[:, 4])
    return g12 & g3, g12 & g3p


_THIN_LUTS = _thinning_luts()
_NEIGHBOUR_CODE = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], dtype=np.uint8)


def thin(mask: np.ndarray) -> np.ndarray:
    """Morphological thinning of a binary mask to one-pixel-wide lines (Guo-Hall, as skimage ``thin``)."""
    skel = (np.asarray(mask) != 0).astype(np.uint8)
    count = -1
    while count != int(skel.sum()):
        count = int(skel.sum())
        for lut in _THIN_LUTS:
            code = ndimage.correlate(skel, _NEIGHBOUR_CODE, mode="constant")
            skel[lut[code]] = 0
    return skel.astype(bool)


def edges_from_labelmap(label_map: np.ndarray) -> np.ndarray:
    """Reference edge ground truth: non-zero Laplacian of the LabelMap, thinned; uint8 {0, 1}.

    The Laplacian is OpenCV's default (``cv2.Laplacian``, 3x3 cross kernel, border reflected
    without repeating the edge pixel = scipy's ``mode="mirror"``).
    """
    lap = ndimage.convolve(label_map.astype(np.float64), np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]), mode="mirror")
    return thin(lap != 0).astype(np.uint8)


def decode_human_parts(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """The 7-class parts map (0 background, 1..6 parts) from a PASCAL-Part ``.mat``; all 255 without parts.

    As the reference: ``loadmat(f)['anno'][0][0][1][0]`` lists the objects, each ``(class, class_ind,
    mask, parts)``; persons (class_ind 15) with a non-empty part list are painted in order, later
    parts overwriting earlier ones. A map with no part pixel is all ignore (the reference's
    ``AddIgnoreRegions`` does the same to an all-zero map).
    """
    mat = read_file(path, scipy.io.loadmat, "human parts")
    try:
        objects = mat["anno"][0][0][1][0]
        persons = [o for o in objects if int(np.asarray(o[1]).flat[0]) == PERSON_CLASS and len(o[3]) != 0]
        parts = [(str(np.asarray(p[0]).flat[0]), np.asarray(p[1])) for o in persons for p in o[3][0]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a PASCAL-Part annotation (anno.objects.class_ind/parts expected): {exc}") from exc
    target = np.zeros(hw, dtype=np.uint8)
    for name, mask in parts:
        if name not in HUMAN_PARTS_6:
            raise DataError(f"{path}: unknown person part name {name!r} (expected one of {', '.join(HUMAN_PARTS_6)})")
        check_shape(mask, hw, path, f"part mask {name!r}")
        target[mask.astype(bool)] = HUMAN_PARTS_6[name]
    return target if target.any() else np.full(hw, IGNORE_INDEX, dtype=np.uint8)


def decode_normals_png(path: Path, label_map: np.ndarray) -> np.ndarray:
    """Distilled normals ``2 * x / 255 - 1`` in the project frame, kept only on the 170 NYU-compatible classes."""
    normals = read_png(path, "normals", channels=3).astype(np.float32) * (2.0 / 255.0) - 1.0
    check_shape(normals, label_map.shape, path, "normals")
    keep = np.isin(label_map, normals_valid_classes()) & (np.linalg.norm(normals, axis=2) >= MIN_DECODED_NORM)
    return np.where(keep[..., None], normals * FILE_NORMALS_TO_PROJECT, np.float32(0.0))


@register_dataset
class PascalContextMT(FolderDataset):
    """PASCAL-Context multi-task: semseg (21), human_parts (7), sal, normals (distilled), edge."""

    NAME = "pascal"
    PROVIDES = ("semseg", "human_parts", "sal", "normals", "edge")
    CLASS_NAMES = {"semseg": VOC_CLASSES, "human_parts": HUMAN_PARTS}
    EXPECTED_IDS = {"train": 4998, "val": 5105}  # docs/design.md, section 5.1
    MARKER = "ImageSets/Context"
    LAYOUT = (
        "JPEGImages/, ImageSets/Context/, semseg/, human_parts/, sal_distill/, normals_distill/, "
        "pascal-context/trainval/"
    )
    task_channels: dict[str, int] = {}

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Context" / f"{split}.txt"

    def files(self, sample_id: str) -> dict[str, Path]:
        files = {"image": self.root / "JPEGImages" / f"{sample_id}.jpg"}
        if "semseg" in self.tasks:
            voc = self.root / "semseg" / "VOC12" / f"{sample_id}.png"
            files["semseg"] = voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{sample_id}.png"
        if "human_parts" in self.tasks:
            files["human_parts"] = self.root / "human_parts" / f"{sample_id}.mat"
        if "sal" in self.tasks:
            files["sal"] = self.root / "sal_distill" / f"{sample_id}.png"
        if "normals" in self.tasks:
            files["normals"] = self.root / "normals_distill" / f"{sample_id}.png"
        if "normals" in self.tasks or "edge" in self.tasks:
            files["labelmap"] = self.root / "pascal-context" / "trainval" / f"{sample_id}.mat"
        return files

    def decode(self, files: dict[str, Path]) -> dict[str, np.ndarray]:
        image = read_image(files["image"])
        hw = image.shape[:2]
        out = {"image": image}
        if "labelmap" in files:
            label_map = read_file(files["labelmap"], lambda p: scipy.io.loadmat(p)["LabelMap"], "LabelMap")
            check_shape(label_map, hw, files["labelmap"], "LabelMap")
        if "semseg" in files:
            semseg = read_png(files["semseg"], "semseg")
            check_shape(semseg, hw, files["semseg"], "semseg")
            out["semseg"] = check_labels(semseg, TASKS["semseg"].channels, files["semseg"], "semseg")
        if "human_parts" in files:
            out["human_parts"] = decode_human_parts(files["human_parts"], hw)
        if "sal" in files:
            sal = read_png(files["sal"], "saliency")
            check_shape(sal, hw, files["sal"], "saliency")
            out["sal"] = (sal / 255.0 > 0.5).astype(np.uint8)
        if "normals" in files:
            out["normals"] = decode_normals_png(files["normals"], label_map)
        if "edge" in self.tasks:
            out["edge"] = edges_from_labelmap(label_map)
        return out
