"""The multi-task score (delta_m) against a single-task reference, and reading results files.

``dm = 100 / T * sum_t s_t * (M_t - M_ref,t) / M_ref,t`` over the T tasks both sides report, with
``s_t = +1`` when higher is better and ``-1`` otherwise (from the task table). docs/design.md, section 5.5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import read_json
from ..tasks import TASKS

# Single-task full fine-tuning of Swin-T on PASCAL-Context (headline metrics: mIoU %, mIoU %,
# mIoU %, mean angular error deg): the row of the Polyhistor-line single-task table (Polyhistor,
# NeurIPS 2022, Table 1) that MTLoRA (CVPR 2024) and TADFormer reprint and that the VMT-Adapter /
# MTLoRA / TADFormer dm figures use. See docs/design.md, section 5.7.
REFERENCES: dict[str, dict[str, float]] = {
    "pascal-swin-t": {"semseg": 67.21, "human_parts": 61.93, "sal": 62.35, "normals": 17.97},
}
REFERENCE_DATASETS: dict[str, str] = {"pascal-swin-t": "pascal"}


def multi_task_score(metrics: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """dm in percent over the tasks in both ``metrics`` and ``reference`` (headline numbers)."""
    common = [t for t in metrics if t in reference]
    if not common:
        raise ConfigError(
            f"no task in common with the reference: results have {', '.join(metrics) or 'none'}, "
            f"reference has {', '.join(reference) or 'none'}"
        )
    total = 0.0
    for task in common:
        if reference[task] == 0:
            raise ConfigError(f"reference value for {task} is 0; dm divides by it")
        sign = 1.0 if TASKS[task].higher_is_better else -1.0
        total += sign * (metrics[task] - reference[task]) / reference[task]
    return 100.0 * total / len(common)


def ranking_score(metrics: Mapping[str, float | None], reference: Mapping[str, float]) -> float | None:
    """dm over the tasks with a finite value on both sides and a non-zero reference; None without any.

    For ranking one run's evaluations against each other (its best checkpoint), where a task that
    came out NaN, or a prior that scores 0, must not make every evaluation unrankable.
    """
    usable = {t: v for t, v in metrics.items() if v is not None and math.isfinite(v)
              and t in reference and math.isfinite(reference[t]) and reference[t] != 0}
    return multi_task_score(usable, reference) if usable else None


def _number(value: Any, path: Path, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path}: key {key!r} must be a finite number, got {value!r}")
    return value


def _metrics(raw: Any, path: Path, may_be_empty: bool = False) -> dict[str, float]:
    """Task -> headline number; a task's full metrics mapping gives its headline.

    ``null`` (what ``eval.json`` holds for a metric that came out NaN, e.g. no valid pixel in the
    split) means "not measured": the task is left out of the row and of dm. Empty only in a published
    row that states its dm (``may_be_empty``).
    """
    if not isinstance(raw, dict) or not (raw or may_be_empty):
        raise ConfigError(f"{path}: key 'metrics' must be a non-empty mapping of task to headline metric")
    out = {}
    for task, value in raw.items():
        key = f"metrics.{task}"
        if task not in TASKS:
            raise ConfigError(f"{path}: key {key!r}: unknown task; choose from {', '.join(TASKS)}")
        if isinstance(value, dict):
            key += "." + TASKS[task].headline
            if TASKS[task].headline not in value:
                raise ConfigError(f"{path}: missing key {key!r}")
            value = value[TASKS[task].headline]
        if value is not None:
            out[task] = _number(value, path, key)
            lo, hi = TASKS[task].bounds
            if not lo <= out[task] <= hi:
                raise ConfigError(f"{path}: key {key!r} = {out[task]} is impossible for {task} "
                                  f"({TASKS[task].headline} lies in {lo:g}..{hi:g})")
    return out


def _per_class(raw: Any, path: Path) -> dict[str, dict[str, float | None]]:
    """Task -> class name -> IoU (%) or None (class absent from prediction and ground truth)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{path}: key 'per_class' must map each task to a mapping of class name to IoU")
    return {task: {name: None if v is None else _number(v, path, f"per_class.{task}.{name}")
                   for name, v in classes.items()} for task, classes in raw.items()}


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a run's ``eval.json`` (or its run folder) or a plain ``{"name", "metrics", "trainable"?}`` file.

    Returns ``{"name", "metrics": {task: headline}, "trainable": number or None, "path", "dataset",
    "stated_dm", "stated_reference", "per_class"}``. The name defaults to the file stem, or the run
    directory's name for ``eval.json``. ``trainable`` is read from ``trainable`` or ``params.trainable``.
    A published row without per-task numbers has empty ``metrics`` and states ``dm`` against a built-in
    ``reference``. ``per_class`` is ``eval.json``'s per-class IoU (empty when the file has none).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "eval.json"
    data = read_json(path, "a results file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with key 'metrics'")
    if "metrics" not in data:
        raise ConfigError(f"{path}: missing key 'metrics'")
    name = data.get("name", path.parent.name if path.stem == "eval" else path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: key 'name' must be a non-empty string")
    params = data.get("params")
    if "trainable" in data:
        trainable = _number(data["trainable"], path, "trainable")
    elif isinstance(params, dict) and "trainable" in params:
        trainable = _number(params["trainable"], path, "params.trainable")
    else:
        trainable = None
    if trainable is not None and trainable < 0:
        raise ConfigError(f"{path}: a parameter count cannot be negative, got trainable {trainable!r}")
    dataset = data.get("dataset")
    published = data["metrics"] == {} and data.get("dm") is not None  # a dm without per-task numbers
    if published and data.get("reference") not in REFERENCES:
        raise ConfigError(f"{path}: key 'reference' must name the built-in reference its dm is against "
                          f"({', '.join(REFERENCES)}), got {data.get('reference')!r}")
    return {"name": name, "metrics": _metrics(data["metrics"], path, may_be_empty=published),
            "trainable": trainable, "path": str(path), "dataset": dataset if isinstance(dataset, str) else None,
            "stated_dm": _number(data["dm"], path, "dm") if published else None,
            "stated_reference": data["reference"] if published else None,
            "per_class": _per_class(data.get("per_class"), path)}


def resolve_reference(name_or_path: str | Path) -> dict[str, float]:
    """Headline metrics of a built-in reference (``REFERENCES``) or of a results file."""
    if str(name_or_path) in REFERENCES:
        return dict(REFERENCES[str(name_or_path)])
    if Path(name_or_path).exists():  # a results file, or a run folder (e.g. the user's own st-full run)
        return load_results(name_or_path)["metrics"]
    raise ConfigError(f"reference {str(name_or_path)!r}: neither a built-in ({', '.join(REFERENCES)}), a run folder "
                      "nor a results file")


def reference_dataset(name_or_path: str | Path) -> str | None:
    """The dataset a reference was measured on (a built-in's, or a results file's ``dataset``), if known."""
    if str(name_or_path) in REFERENCE_DATASETS:
        return REFERENCE_DATASETS[str(name_or_path)]
    return load_results(name_or_path)["dataset"] if Path(name_or_path).exists() else None


def dataset_obstacle(dataset: str | None, ref_dataset: str | None) -> str | None:
    """Why results on ``dataset`` cannot be scored against a reference on ``ref_dataset`` (None: they can)."""
    if ref_dataset and dataset and dataset != ref_dataset:
        return f"no dm: measured on {dataset}, the reference on {ref_dataset}"
    return None


def dm_obstacle(result: Mapping[str, Any], reference: Mapping[str, float], ref_dataset: str | None) -> str | None:
    """Why dm of ``result`` against ``reference`` would compare unlike things (None when it is comparable)."""
    missing = [t for t in reference if t not in result["metrics"]]
    if missing:
        return f"no dm: it lacks the reference's task(s) {', '.join(missing)}"
    return dataset_obstacle(result.get("dataset"), ref_dataset)
