"""``eval.json``: a run's headline metrics, all metrics, dm against a reference, and its counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..data.synth import VERSION
from ..fileio import atomic_write
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
               step: int, split: str | None = None, name: str = "eval.json") -> dict:
    """Write the results of an evaluation to ``run_dir / name`` (atomically) and return them."""
    metrics = headlines(model.tasks, details)
    reference = cfg.eval.reference
    dm = multi_task_score(metrics, resolve_reference(reference)) if reference else None
    result = {
        "name": run_dir.name,
        "method": model.method.name,
        "backbone": model.backbone_name,
        "dataset": cfg.data.name,
        "dataset_version": VERSION if cfg.data.name == "synth" else None,
        "split": split or cfg.eval.split,
        "step": step,
        "metrics": {k: _finite(v) for k, v in metrics.items()},
        "details": {t: {k: _finite(v) for k, v in d.items()} for t, d in details.items()},
        "dm": dm,
        "reference": reference or None,
        "params": model.parameter_counts(),
        "eval_resolution": "original" if cfg.eval.full_res else f"{cfg.data.size}x{cfg.data.size}",
    }
    atomic_write(run_dir / name, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    return result
