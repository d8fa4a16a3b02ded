"""Typed run configuration: YAML files in ``configs/`` plus ``--set key=value`` overrides.

Every key has a typed default here; an unknown key or a value of the wrong type is a
``ConfigError`` that names it (with a "did you mean" for near misses).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data import DATASETS, dataset_class
from ..data.pascal import check_tasks
from ..data.transforms import EMPTIED, PADS
from ..device import PRECISIONS, pick_device
from ..errors import ConfigError
from ..fileio import atomic_write
from ..models.decoders import DECODERS, Decoder
from ..models.factory import ModelConfig, method_config
from ..tasks import parse_task_names
from ..typed import build


@dataclass
class DataConfig:
    name: str = "synth"  # a registered dataset: synth | pascal | nyud (``data.registry``)
    root: str = ""  # dataset folder (not used by synth)
    size: int = 128  # training and evaluation resolution (square)
    num_train: int = 0  # synth only: number of training scenes (0 = the split's default)
    num_val: int = 0  # synth only: number of validation scenes (0 = the split's default)
    workers: int = 0  # DataLoader worker processes
    train_split: str = "train"  # the split training reads (SynthScenes pretraining: "pretrain")
    cache_dir: str = ""  # synth only: keep rendered scenes here (npz) instead of rendering every epoch
    pad: str = "ignore"  # after scale / rotate: ignore (labels 255, image mean) | zero (the public code's fill)
    emptied: str = "keep"  # a human-parts map augmentation leaves without a part: keep (background) | ignore (public)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16  # per process
    lr: float = 1e-3
    weight_decay: float = 0.05  # not applied to 1-D parameters (biases, norms, task vectors)
    # decay Swin's relative-position tables (ViT: position embedding), as the public code
    decay_position_tables: bool = False
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 50
    warmup_lr: float | None = None  # lr at step 0 (the public code's WARMUP_LR); None: ramp (step + 1) / warmup
    min_lr: float = 0.0  # where the cosine ends (the public code's MIN_LR)
    lr_lag: int = 0  # 1: step k runs at the schedule's rate of k - 1, as the public code's after-step scheduler update
    grad_clip: float = 5.0  # 0 disables clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast and a GradScaler; CUDA only)
    log_every: int = 10
    eval_every: int = 500  # evaluate on eval.split every N steps, for the log and best.pt (0 = only at the end)
    ckpt_every: int = 100
    loss_weights: dict = field(default_factory=dict)  # task -> weight, overrides the task table
    on_nonfinite: str = "stop"  # stop | skip
    grad_checkpointing: bool = False  # recompute the frozen blocks in backward: less memory, more time


@dataclass
class EvalConfig:
    split: str = "val"
    batch_size: int = 16
    full_res: bool = False  # evaluate at the original resolution instead of data.size
    reference: str = ""  # built-in reference name or results file for the multi-task score
    precision: str = "fp32"  # fp32 (the public code's evaluation) | train (the training's autocast)


@dataclass
class RunConfig:
    seed: int = 0
    tasks: list = field(default_factory=lambda: ["semseg", "human_parts", "sal", "normals"])
    device: str = "auto"
    deterministic: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _set(tree: dict, dotted: str, raw: str) -> None:
    """Apply one ``key=value`` override; the value is parsed as YAML (numbers, lists, booleans)."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {dotted}={raw}: not a valid value ({exc.problem})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict:
    """The file's mapping; every failure is one line naming the file (and line and column for syntax)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if tree is None:
        raise ConfigError(f"config file {path} is empty; give at least one key (every other key has a default)")
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    return tree


CONFIG_DIR = Path(str(resources.files("vmt_adapter") / "configs"))  # shipped as package data


def config_names() -> list[str]:
    """The shipped configs, by the name ``--config`` accepts (the file name without ``.yaml``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """A config file: an existing path, else a shipped config by name (``synth-vmt`` or ``synth-vmt.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    if path.exists():
        raise ConfigError(f"config {path} is not a file")
    raise ConfigError(f"config file not found: {path} (shipped configs: {', '.join(config_names())})")


def read_tree(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """The YAML file's mapping (a path or a shipped config's name) with ``key=value`` overrides applied."""
    tree: dict = _read_yaml(resolve_config(path)) if path else {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        _set(tree, key.strip(), raw.strip())
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file (a path or a shipped config's name), then ``key=value`` overrides."""
    tree = read_tree(path, overrides)
    if "objective" in tree:  # an upstream pretraining config (experiments.upstream)
        raise ConfigError(f"config {path} is an upstream pretraining config (it has an 'objective' section); "
                          "use it with vmt pretrain")
    return validate(build(RunConfig, tree))


def validate(cfg: RunConfig) -> RunConfig:
    if not all(isinstance(t, str) for t in (cfg.tasks if isinstance(cfg.tasks, list) else [cfg.tasks])):
        raise ConfigError(f"config key 'tasks' must be a list of task names, got {cfg.tasks!r}")
    cfg.tasks = parse_task_names(cfg.tasks)
    fusions = DECODERS.get(cfg.model.decoder, Decoder).FUSIONS  # an unknown head is refused when it is built
    checks = [
        ("data.name", cfg.data.name in DATASETS, f"one of {', '.join(DATASETS)}"),
        ("data.size", cfg.data.size >= 32, "at least 32"),
        ("train.steps", cfg.train.steps >= 1, "at least 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, "at least 1"),
        ("train.log_every", cfg.train.log_every >= 1, "at least 1"),
        ("train.ckpt_every", cfg.train.ckpt_every >= 1, "at least 1"),
        ("train.eval_every", cfg.train.eval_every >= 0, "non-negative (0 = only at the end)"),
        ("eval.batch_size", cfg.eval.batch_size >= 1, "at least 1"),
        ("train.lr", cfg.train.lr > 0, "positive"),
        ("train.precision", cfg.train.precision in PRECISIONS, f"{', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}"),
        ("eval.precision", cfg.eval.precision in ("fp32", "train"), "fp32 or train"),
        ("train.on_nonfinite", cfg.train.on_nonfinite in ("stop", "skip"), "stop or skip"),
        ("train.warmup_steps", cfg.train.warmup_steps >= 0, "non-negative"),
        ("train.lr_lag", cfg.train.lr_lag in (0, 1), "0 (the project) or 1 (the public code's lag)"),
        ("train.min_lr", 0 <= cfg.train.min_lr <= cfg.train.lr, "between 0 and train.lr"),
        ("train.warmup_lr", cfg.train.warmup_lr is None or 0 <= cfg.train.warmup_lr <= cfg.train.lr,
         "between 0 and train.lr (or null)"),
        ("model.decoder_ratio", cfg.model.decoder_ratio >= 1, "at least 1"),
        # Swin halves the map three times after its patch-4 embedding: sides must divide by 32.
        ("data.size", cfg.data.size % 32 == 0 and cfg.data.size <= 4096, "a multiple of 32, at most 4096"),
        ("train.grad_clip", cfg.train.grad_clip >= 0, "non-negative (0 disables clipping)"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, "non-negative"),
        ("train.betas", len(cfg.train.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1
                                                          for b in cfg.train.betas), "two numbers in [0, 1)"),
        ("data.workers", cfg.data.workers >= 0, "non-negative (0 = load in the training process)"),
        ("data.pad", cfg.data.pad in PADS, " or ".join(PADS)),
        ("data.emptied", cfg.data.emptied in EMPTIED, " or ".join(EMPTIED)),
        ("model.decoder_fusion", cfg.model.decoder_fusion in fusions,
         f"{' or '.join(fusions)} (the {cfg.model.decoder} head)"),
        ("seed", 0 <= cfg.seed < 2**32, "in 0..2**32 - 1"),
        ("model.decoder_ratio", cfg.model.decoder_ratio <= 64, "at most 64"),
        ("tasks", all(isinstance(t, str) for t in cfg.tasks), "a list of task names"),
        ("model.drop_path", cfg.model.drop_path is None or isinstance(cfg.model.drop_path, (int, float))
         and 0 <= cfg.model.drop_path < 1, "a probability in [0, 1) (or null: timm's default)"),
        ("train.loss_weights", all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                                   and w >= 0 for w in cfg.train.loss_weights.values()),
         "a mapping of task names to finite non-negative numbers"),
    ]
    for key, value in flatten_config(cfg.to_dict()).items():  # inf / nan pass every comparison below, or fail late
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value}")
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"config key {key!r} must be {expected}")
    unknown = set(cfg.train.loss_weights) - set(cfg.tasks)
    if unknown:
        raise ConfigError(f"train.loss_weights names task(s) not in tasks: {', '.join(sorted(unknown))}")
    dataset = dataset_class(cfg.data.name)
    check_tasks(cfg.tasks, dataset.PROVIDES, f"config: dataset {cfg.data.name!r}")
    method_config(cfg.model)  # an unknown method, field or value is refused before any work
    pick_device(cfg.device)  # an unknown or absent device is refused before any work
    if dataset.SPLITS is not None:  # datasets on disk name their split files; their loaders report a missing one
        for key, split in (("eval.split", cfg.eval.split), ("data.train_split", cfg.data.train_split)):
            if split not in dataset.SPLITS:
                raise ConfigError(f"config key {key!r}: {dataset.__name__} has no split {split!r}; choose from "
                                  f"{', '.join(dataset.SPLITS)}")
    if dataset.NEEDS_ROOT and not cfg.data.root:
        raise ConfigError(f"data.root is required for data.name={cfg.data.name!r} (set it with --set data.root=DIR)")
    return cfg


def flatten_config(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config dict, so that a mismatch is named key by key (a method's hparams
    count as one key)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "hparams":
            out |= flatten_config(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def save_config(cfg: RunConfig, path: Path) -> None:
    d = cfg.to_dict()
    d["train"]["betas"] = list(d["train"]["betas"])
    atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(d, sort_keys=False)))
