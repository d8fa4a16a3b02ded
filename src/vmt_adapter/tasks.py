"""The task table: the one place that says what each dense task is.

Models read ``channels``; everything a task's kind decides (resampling, loss, meter, prior, pictures) lives in
``vmt_adapter.kinds``, found from ``kind``; the loss sum and the multi-task score read ``loss_weight`` and
``higher_is_better``. Nothing else in the package branches on a task name.

Label conventions shared by every dataset (what a sample dict holds under the task name):

==============  =====================================  ==========================================
task            target tensor                          ignored where
==============  =====================================  ==========================================
semseg          int64 (H, W), class ids                255
human_parts     int64 (H, W), PASCAL part ids 0..6     255 (whole map when no part is annotated)
sal             int64 (H, W), {0, 1}                   255
normals         float32 (3, H, W), unit vectors        zero vector
                (camera frame: x right, y up, z
                towards the camera)
depth           float32 (1, H, W), metres              0
edge            int64 (H, W), {0, 1}                   255
==============  =====================================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import ConfigError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class TaskSpec:
    """One dense prediction task.

    ``kind`` names its ``vmt_adapter.kinds`` module (resampling, loss, meter, prior, pictures);
    ``headline`` is the metric that benchmark tables report.
    """

    name: str
    channels: int
    kind: str  # "classes" | "binary" | "normals" | "depth" | "edge"
    loss_weight: float
    headline: str
    higher_is_better: bool
    unit: str = ""
    bounds: tuple[float, float] = (0.0, float("inf"))  # what a headline value can be; outside it is a broken file
    # A label map with nothing but background (0) and ignore (255) carries no annotation (PASCAL's human
    # parts: images without people, or whose people were not annotated): ignored whole (``data.transforms``).
    empty_is_unlabelled: bool = False


# Channels are PASCAL-Context's; datasets with other label sets override them (see ``resolve_tasks``).
# Loss weights are the public MTLoRA / Vandenhende recipe (docs/design.md, section 5.3).
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("semseg", 21, "classes", 1.0, "mIoU", True, "%", (0.0, 100.0)),
        TaskSpec("human_parts", 7, "classes", 2.0, "mIoU", True, "%", (0.0, 100.0), empty_is_unlabelled=True),
        TaskSpec("sal", 1, "binary", 5.0, "mIoU", True, "%", (0.0, 100.0)),
        TaskSpec("normals", 3, "normals", 10.0, "mean", False, "deg", (0.0, 180.0)),
        TaskSpec("depth", 1, "depth", 1.0, "rmse", False, "m"),
        TaskSpec("edge", 1, "edge", 50.0, "loss", False, ""),
        # Pretraining only (``vmt pretrain`` on SynthScenes): the coarse shape taxonomy.
        TaskSpec("coarse_shape", 4, "classes", 1.0, "mIoU", True, "%", (0.0, 100.0)),
    )
}


def parse_task_names(names: str | list[str] | tuple[str, ...]) -> list[str]:
    """Accept ``"semseg,sal"`` or a list; reject unknown or repeated names with a clear message."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ConfigError("no task given; choose from " + ", ".join(TASKS))
    for n in names:
        if n not in TASKS:
            raise ConfigError(f"unknown task {n!r}; choose from {', '.join(TASKS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"task repeated in {','.join(names)}")
    return names


def resolve_tasks(names: str | list[str], channels: dict[str, int] | None = None) -> list[TaskSpec]:
    """Specs for ``names`` in the given order, with a dataset's channel overrides applied."""
    channels = channels or {}
    return [
        replace(TASKS[n], channels=channels[n]) if n in channels else TASKS[n]
        for n in parse_task_names(names)
    ]
