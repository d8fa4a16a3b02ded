"""``eval.json``: a run's headline metrics, all metrics, per-class IoU, dm against a reference, and its counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..data import dataset_class
from ..data.labels import class_names
from ..fileio import atomic_write
from ..kinds.classes import class_iou_key
from ..models.multitask import MultiTaskModel
from .config import RunConfig
from .evaluate import headlines
from .score import multi_task_score, resolve_reference


def _finite(x: float) -> float | None:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def eval_file_name(split: str, full_res: bool) -> str:
    """Where ``vmt eval`` writes: never the training's own ``eval.json`` (which marks a run finished)."""
    return f"eval-{split}{'-fullres' if full_res else ''}.json"


def write_eval(run_dir: Path, model: MultiTaskModel, details: dict[str, dict[str, float]], cfg: RunConfig,
               step: int, split: str | None = None, name: str = "eval.json", best: dict | None = None) -> dict:
    """Write the results of an evaluation to ``run_dir / name`` (atomically) and return them.

    Label-map tasks' per-class IoU goes to its own ``per_class`` section, by class name; ``best`` is the
    training's best evaluation (step and score, see ``Trainer``), when there is one."""
    metrics = headlines(model.tasks, details)
    labelled = [spec for spec in model.tasks if class_iou_key(0) in details[spec.name]]
    per_class = {spec.name: {name: _finite(details[spec.name][class_iou_key(c)])
                             for c, name in enumerate(class_names(cfg.data.name, spec))} for spec in labelled}
    moved = {(spec.name, class_iou_key(c)) for spec in labelled for c in range(spec.channels)}
    reference = cfg.eval.reference
    dm = multi_task_score(metrics, resolve_reference(reference)) if reference else None
    result = {
        "name": run_dir.name,
        "method": model.method.name,
        "backbone": model.base.backbone,
        "dataset": cfg.data.name,
        "dataset_version": dataset_class(cfg.data.name).VERSION,
        "split": split or cfg.eval.split,
        "step": step,
        "metrics": {k: _finite(v) for k, v in metrics.items()},
        "details": {t: {k: _finite(v) for k, v in d.items() if (t, k) not in moved} for t, d in details.items()},
        "per_class": per_class,
        "dm": dm,
        "reference": reference or None,
        "params": model.parameter_counts(),
        "eval_resolution": "original" if cfg.eval.full_res else f"{cfg.data.size}x{cfg.data.size}",
    }
    if best is not None:
        result["best"] = best
    atomic_write(run_dir / name, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    return result
