"""Datasets, transforms and the SynthScenes generator.

Contract every dataset follows (the engine relies on nothing else):

- ``dataset[i]`` is a dict: ``"image"`` float32 (3, H, W), ImageNet-normalised; one entry per
  requested task in the conventions of ``vmt_adapter.tasks`` (int64 label maps with 255 ignore,
  float32 normals (3, H, W) with zero = ignore, float32 depth (1, H, W) with 0 = ignore);
  ``"id"`` a string.
- ``dataset.tasks``: the task names it serves, in order; ``dataset.task_channels``: a dict of
  output-channel overrides for ``tasks.resolve_tasks`` (e.g. ``{"semseg": 8}`` on SynthScenes).
- ``build_dataset(name, root, split, tasks, size, train)`` is the single entry point.
"""

# Each dataset module registers its class on import (``data.registry``): a new dataset is its module and a line here.
# isort: off
from . import synth, pascal, nyud  # noqa: F401 (registration order: the default first)
# isort: on
from .build import build_dataset, dataset_channels
from .registry import DATASETS, dataset_class

__all__ = ["DATASETS", "build_dataset", "dataset_channels", "dataset_class"]
