"""A run as a model: the model a config describes, the one a training starts from, and a finished run
directory rebuilt (its config, backbone and loaded adapter); the files a run folder holds."""

from __future__ import annotations

from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path

from ..data import dataset_channels
from ..device import drawn_from, seed_everything
from ..errors import ConfigError
from ..models.factory import build_model
from ..models.io import load_adapter, read_adapter_config, recorded_init_seed
from ..models.multitask import MultiTaskModel
from ..tasks import resolve_tasks
from .config import RunConfig, load_config


def run_model(cfg: RunConfig) -> MultiTaskModel:
    """The model of a run: its ``model:`` section built for its tasks and input size."""
    return build_model(cfg.model, resolve_tasks(cfg.tasks, dataset_channels(cfg.data.name)), cfg.data.size)


def initial_model(cfg: RunConfig) -> MultiTaskModel:
    """The model a training run starts from; with ``model.from_run``, that run's trained adapter
    grown by the last of ``model.task_groups`` (only the new tasks' parameters train)."""
    if not cfg.model.from_run:
        return run_model(cfg)
    groups = cfg.model.task_groups
    if len(groups) < 2:
        raise ConfigError("model.from_run needs model.task_groups: the run's task groups, then the tasks to add")
    tasks = resolve_tasks(cfg.tasks, dataset_channels(cfg.data.name))
    added = set(groups[-1])
    run = Path(cfg.model.from_run)
    with drawn_from(recorded_init_seed(read_adapter_config(run), run, strict=False)):  # a random base, drawn again
        model = build_model(replace(cfg.model, task_groups=groups[:-1]), [t for t in tasks if t.name not in added],
                            cfg.data.size)
    load_adapter(model, run)
    model.add_tasks([t for t in tasks if t.name in added])
    return model


def load_run(run_dir: Path, overrides: list[str]):
    """The config and model of a finished run (adapter loaded onto its base backbone)."""
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml", overrides)
    seed_everything(cfg.seed, cfg.deterministic)
    # A random backbone is drawn again from the seed its adapter records (older files: the run's seed).
    with drawn_from(recorded_init_seed(read_adapter_config(run_dir), run_dir, strict=False)):
        model = run_model(cfg)
    load_adapter(model, run_dir)
    return cfg, model


# What training and pretraining write in a run folder: an output file must never replace one of these.
RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl", "eval*.json", "*.pt", "*.sha256", "adapter.*", "*.lock",
             "loss.png", "*.tmp")


def check_output_file(out: str | Path, run_dir: str | Path, overwrite: bool = False, new_folder: bool = False) -> Path:
    """``out`` as a file a command may write at the end of its work, checked before the work starts: not a
    folder, its folder present (unless the command makes it: ``new_folder``), not one of ``run_dir``'s own
    files, and not an existing file unless ``overwrite``."""
    out, run = Path(out), Path(run_dir).resolve()
    target = out.resolve()
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the file to write")
    if not new_folder and not out.parent.is_dir():
        raise ConfigError(f"--out {out}: its folder {out.parent} does not exist")
    if target.parent != run and run in target.parents or target.parent == run and \
            any(fnmatch(target.name, pattern) for pattern in RUN_FILES):
        raise ConfigError(f"--out {out} is one of the run folder {run_dir}'s own files; write elsewhere")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} exists; pass --overwrite to replace it")
    return out

