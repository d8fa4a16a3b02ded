"""A finished run directory as a model: its config, rebuilt backbone and loaded adapter."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from ..device import drawn_from, seed_everything
from ..errors import ConfigError
from ..models.io import load_adapter, read_adapter_config, recorded_init_seed
from .config import load_config
from .train import run_model


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

