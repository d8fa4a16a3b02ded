"""Task kinds (``TaskSpec.kind``): one module per kind holds everything the package does with a task of
that kind (resampling, loss, meter, prior, pictures); ``kind_of(spec)`` finds it. A new kind is its module
and a line here."""

# isort: off
from .base import KINDS, Meter, TaskKind, global_counts, kind_of, register_kind
from . import classes, binary, edge, normals, depth  # noqa: F401 (registration, in the task table's order)
# isort: on

__all__ = ["KINDS", "Meter", "TaskKind", "global_counts", "kind_of", "register_kind"]
