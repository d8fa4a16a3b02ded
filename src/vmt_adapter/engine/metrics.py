"""Evaluation meters, one per task, each its kind's (``vmt_adapter.kinds``), over a whole evaluation set.

Each meter's state is a fixed list of tensors whose element-wise sum over disjoint parts of the
set equals the state over the whole set (counts, sums, a confusion matrix, a histogram). So a
DDP evaluation runs the meters on each process's shard and calls ``all_reduce()`` once; merging
saved states is ``load_state([a + b for a, b in zip(s1, s2)])``. The state lives on the CPU in
int64 / float64; each batch adds small per-batch reductions to it.

``update(pred, target)`` takes the model's raw output for the task (logits, unnormalised normals,
raw depth; see ``vmt_adapter.tasks`` for targets). ``compute()`` returns plain floats; a meter
that saw no valid pixel returns NaN. Conventions follow the public MTL evaluation code
(Vandenhende et al., MTLoRA), docs/design.md, section 5.4; where this module departs, it says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..kinds import Meter, kind_of
from ..tasks import TaskSpec


def build_meters(tasks: Sequence[TaskSpec]) -> dict[str, Meter]:
    """A fresh meter per task, its kind's."""
    return {spec.name: kind_of(spec).meter(spec) for spec in tasks}


def headline(spec: TaskSpec, metrics: Mapping[str, float]) -> float:
    """The number benchmark tables report for this task (``spec.headline``)."""
    return metrics[spec.headline]
