"""The single entry point from a dataset name to a ready dataset (``build_dataset``) or its label sizes.

Task names are checked against what the dataset provides before anything is read, so a bad
configuration fails with the list of valid choices rather than a missing-file error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import ConfigError
from .nyud import NYUDv2MT
from .pascal import FolderDataset, PascalContextMT, check_tasks
from .synth import SynthScenes
from .transforms import build_transform

DATASETS: dict[str, type[Dataset]] = {"synth": SynthScenes, "pascal": PascalContextMT, "nyud": NYUDv2MT}


def dataset_class(name: str) -> type[Dataset]:
    """The class registered under ``name``."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_channels(name: str) -> dict[str, int]:
    """Output-channel overrides of a dataset (for ``tasks.resolve_tasks``), without reading any data."""
    cls = dataset_class(name)
    if issubclass(cls, FolderDataset):
        return dict(cls.task_channels)
    return dict(SynthScenes(num=1).task_channels)  # set per instance; constructing one renders nothing


def build_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    tasks: str | Sequence[str],
    size: int | None,
    train: bool,
    seed: int = 0,
    num: int | None = None,
    cache_dir: str | Path | None = None,
    pad: str = "ignore",
    emptied: str = "keep",
) -> Dataset:
    """A dataset with the project's transform: augmented at ``size`` when ``train``, else resized to ``size``.

    ``size=None`` (evaluation only) keeps each image's own resolution; SynthScenes then renders at
    its default size. ``seed`` drives augmentation only: the SynthScenes stream stays the default
    one, so that runs with different seeds see the same data, as they would on a real dataset.
    ``num`` keeps the first ``num`` samples (SynthScenes: how many to render). ``root`` is ignored
    for ``synth``; ``cache_dir`` (synth only) stores rendered scenes; ``pad`` fills the pixels a training
    geometry brings in from outside the image and ``emptied`` says what becomes of a map the geometry
    left without annotation (``data.transforms``).
    """
    names = check_tasks(tasks, dataset_class(name).PROVIDES, f"dataset {name!r}")
    transform = build_transform(train=train, size=size, seed=seed, pad=pad, emptied=emptied)
    if name == "synth":
        return SynthScenes(split, names, num=num, transform=transform, cache_dir=cache_dir or None,
                           **({} if size is None else {"size": size}))
    if root is None:
        raise ConfigError(f"dataset {name!r} needs a root folder (data.root)")
    dataset = DATASETS[name](root, split, names, transform=transform)
    return dataset if num is None else dataset.head(num)
