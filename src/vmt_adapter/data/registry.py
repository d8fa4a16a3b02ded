"""The dataset registry: every dataset class registers itself here under its ``NAME``.

A dataset class declares what the rest of the package derives from it (config validation, ``vmt data
check``, CLI choices, run records), so that adding one touches its own file and the import line in
``data/__init__.py``:

- ``NAME``, ``PROVIDES`` (task names), ``task_channels`` (output-channel overrides of the task table),
  ``CLASS_NAMES`` (task -> class names, for legends);
- ``NEEDS_ROOT``: whether it reads a folder (``data.root``); ``SPLITS``: its split names when it knows them
  without a folder (``None``: the folder's split files say); ``VERSION``: the generator version of a
  synthetic dataset (recorded in results), ``None`` for files on disk;
- ``EXPECTED_IDS`` (split -> count of the public release) and ``detect(root)`` for ``vmt data check``;
- ``build(root, split, tasks, transform, size, num, cache_dir)``: the dataset, ready for the engine: it keeps
  ``transform`` as its attribute, ``raw(i)`` returns sample i in the raw numpy layout of ``data.transforms``
  (with an ``"id"``), and ``dataset[i]`` is ``transform(raw(i))`` (training draws the augmentation itself).
"""

from __future__ import annotations

from typing import TypeVar

from ..errors import ConfigError

DATASETS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_dataset(cls: T) -> T:
    """Class decorator: make ``cls`` available as ``data.name: <cls.NAME>``."""
    if cls.NAME in DATASETS:
        raise ValueError(f"dataset {cls.NAME!r} registered twice")
    DATASETS[cls.NAME] = cls
    return cls


def dataset_class(name: str) -> type:
    """The class registered under ``name``."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def folder_datasets() -> dict[str, type]:
    """The registered datasets read from a folder that ``vmt data check`` can recognise."""
    return {name: cls for name, cls in DATASETS.items() if cls.NEEDS_ROOT and cls.EXPECTED_IDS}
