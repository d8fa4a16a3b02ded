"""The single entry point from a dataset name to a ready dataset (``build_dataset``) or its label sizes.

Task names are checked against what the dataset provides before anything is read, so a bad
configuration fails with the list of valid choices rather than a missing-file error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset

from .pascal import check_tasks
from .registry import dataset_class
from .transforms import build_transform


def dataset_channels(name: str) -> dict[str, int]:
    """Output-channel overrides of a dataset (for ``tasks.resolve_tasks``), without reading any data."""
    return dict(dataset_class(name).task_channels)


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
    cls = dataset_class(name)
    names = check_tasks(tasks, cls.PROVIDES, f"dataset {name!r}")
    transform = build_transform(train=train, size=size, seed=seed, pad=pad, emptied=emptied)
    return cls.build(root, split, names, transform, size=size, num=num, cache_dir=cache_dir)
