"""A finished run directory as a model: its config, rebuilt backbone and loaded adapter."""

from __future__ import annotations

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
