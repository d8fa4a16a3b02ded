"""Adapter-only files (peft style): ``adapter.safetensors`` with the trainable part and
``adapter.json`` saying how to rebuild the model around it from a base backbone."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..device import drawn_from
from ..errors import ConfigError, WeightsError
from ..fileio import atomic_write, sha256_file
from ..tasks import TaskSpec, resolve_tasks
from .adapters import read_config
from .backbones import BACKBONES, resolve_weights
from .backbones.weights import state_mismatch
from .factory import ModelConfig, build_model
from .multitask import MultiTaskModel

WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter.json"
FORMAT = "vmt-adapter/1"
# Sizes an adapter file may ask for (the model is allocated from them): the limits of the configs.
BOUNDS = (("img_size", 32, 4096), ("decoder_ratio", 1, 64), ("task_channels", 1, 1024))
OLDER_DEFAULTS = {"decoder": "hrnet", "decoder_ratio": 4, "taps": "stage", "tap_norm": True}


def adapter_config(model: MultiTaskModel) -> dict:
    return {
        "format": FORMAT,
        "version": __version__,
        "method": model.method.name,
        "backbone": model.base.backbone,
        "img_size": model.img_size,
        "decoder": model.decoder_spec.name,
        "taps": model.taps,
        "tap_norm": model.decoder_spec.tap_norm,
        "decoder_ratio": model.decoder_spec.ratio,
        "tasks": [t.name for t in model.tasks],
        "task_groups": model.task_groups,
        "task_channels": {t.name: t.channels for t in model.tasks},
        "hparams": model.method.hparams(),
        "base_weights": model.base_weights,
    }


def save_adapter(model: MultiTaskModel, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous().cpu() for k, v in model.trainable_state_dict().items()}
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    # safetensors has no checksum: the json records one, so that a damaged weights file is refused.
    text = json.dumps(adapter_config(model) | {"weights_sha256": sha256_file(out / WEIGHTS_NAME)}, indent=2)
    atomic_write(out / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return out


def read_adapter_config(path: str | Path) -> dict:
    """``path`` is a run folder, an adapter.json or an adapter.safetensors beside its json."""
    path = Path(path)
    cfg_path = path / CONFIG_NAME if path.is_dir() else path.with_name(CONFIG_NAME)
    try:
        cfg = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"adapter config not found: {cfg_path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"adapter config {cfg_path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise WeightsError(f"adapter config {cfg_path} is nested too deeply to be an adapter config") from None
    except OSError as exc:  # a folder in its place, no permission, ...
        raise WeightsError(f"adapter config {cfg_path} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"adapter config {cfg_path} must hold a JSON object, got {type(cfg).__name__}")
    if cfg.get("format") != FORMAT:
        raise WeightsError(f"adapter config {cfg_path}: format {cfg.get('format')!r} is not {FORMAT!r}")
    # The base record and the checksum are what bind a file to its weights: without them a file would load
    # on any base, or load flipped bytes, so they are required, not optional.
    missing = [k for k in ("method", "backbone", "tasks", "hparams", "base_weights", "weights_sha256") if k not in cfg]
    if missing:
        raise WeightsError(f"adapter config {cfg_path} lacks key(s) {', '.join(missing)}")
    base = cfg["base_weights"]
    if not isinstance(base, dict) or not isinstance(base.get("name"), str) or \
            not isinstance(base.get("sha256"), (str, type(None))):
        raise WeightsError(f"adapter config {cfg_path}: base_weights must be an object with a name and a sha256, "
                           f"got {base!r:.80}")
    if not isinstance(cfg["weights_sha256"], str):
        raise WeightsError(f"adapter config {cfg_path}: weights_sha256 must be a string, "
                           f"got {cfg['weights_sha256']!r:.80}")
    for key, low, high in BOUNDS:
        raw = cfg.get(key)
        if raw is None:  # absent or null: the model's own default
            continue
        values = list(raw.values()) if key == "task_channels" and isinstance(raw, dict) else [raw]
        if not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values):
            raise WeightsError(f"adapter config {cfg_path}: {key} must hold integers in {low}..{high}, "
                               f"got {cfg.get(key)!r:.80}")
    return cfg


def model_from_adapter(path: str | Path, pretrained: str | Path | None = None,
                       allow_other_base: bool = False) -> MultiTaskModel:
    """Rebuild the model an adapter file was trained with, on a base backbone, and load the file.

    ``pretrained`` (default: the base weights ``adapter.json`` records) must be the weights the adapter
    was trained on (checked by SHA-256) unless ``allow_other_base``. ``vmt_adapter.from_pretrained`` calls this.
    """
    cfg = read_adapter_config(path)
    seed = None
    if pretrained is None:
        pretrained = recorded_base(cfg, path)
        seed = None if pretrained else recorded_init_seed(cfg, path)
    if _typed(cfg, "backbone", str, path) not in BACKBONES:  # said here: the backbone's own error names no file
        raise WeightsError(f"adapter {path}: unknown backbone {cfg['backbone']!r}; choose from {', '.join(BACKBONES)}")
    try:
        tasks: list[TaskSpec] = resolve_tasks(_typed(cfg, "tasks", list, path),
                                              _typed(cfg, "task_channels", dict, path, None))
        layout = {k: _typed(cfg, k, type(v), path, v) for k, v in OLDER_DEFAULTS.items()}
        spec = ModelConfig(backbone=_typed(cfg, "backbone", str, path), method=_typed(cfg, "method", str, path),
                           pretrained=str(pretrained or ""), **layout, hparams=_typed(cfg, "hparams", dict, path),
                           task_groups=_typed(cfg, "task_groups", list, path, []))
        with drawn_from(seed):
            model = build_model(spec, tasks, img_size=_typed(cfg, "img_size", int, path, None))
    except (ConfigError, TypeError, ValueError, RuntimeError) as exc:  # every input here comes from the file
        raise WeightsError(f"adapter {path} describes a model that cannot be built: "
                           f"{' '.join(str(exc).split())}") from None  # one line, whatever names the file holds
    load_adapter(model, path, allow_other_base)
    return model


def recorded_base(cfg: dict, path: str | Path) -> str | None:
    """The base weights an adapter file records (None: random init, or a file older than the record);
    a recorded file that is not here is named, since the adapter is only valid on it."""
    base = cfg.get("base_weights")
    if not isinstance(base, dict) or not base.get("sha256"):
        return None
    if not resolve_weights(str(base.get("name"))).is_file():
        raise WeightsError(f"adapter {path} was trained on base weights {base.get('name')!r}, which are not here; "
                           "pass their path as base=")
    return str(base["name"])


def recorded_init_seed(cfg: dict, path: str | Path, strict: bool = True) -> int | None:
    """The seed a random backbone was drawn from (None: the adapter records base weights, or predates the
    base record); ``strict``: a random-init file without it cannot be rebuilt, so it is refused, not guessed."""
    base = cfg.get("base_weights")
    if not isinstance(base, dict) or base.get("sha256"):
        return None
    if not isinstance(base.get("init_seed"), int):
        if not strict:
            return None
        raise WeightsError(f"adapter {path} was trained on a randomly initialised backbone and does not record its "
                           "seed: it cannot be rebuilt (vmt eval --run RUN rebuilds it from the run's seed); "
                           "pass base= to load it onto other weights with allow_other_base=True")
    return base["init_seed"]


def _typed(cfg: dict, key: str, typ: type, path: str | Path, default: object = ...) -> object:
    """``cfg[key]`` checked against ``typ`` (``default`` when absent or null, if one is given)."""
    value = cfg.get(key)
    if value is None and default is not ...:
        return default
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise WeightsError(f"adapter {path}: {key!r} must be a {typ.__name__}, got {shown}")
    return value


def _short(sha256: object) -> str:
    """The first 12 hex digits of a recorded hash, as messages show it ("none" for random init)."""
    return str(sha256)[:12] if sha256 else "none"


def load_trainable(model: MultiTaskModel, state: dict[str, torch.Tensor]) -> str:
    """Copy ``state`` (an adapter file's or a checkpoint's trainable tensors) into ``model``, or, if they do not fit
    it, copy nothing and say why. Files written while st-full's per-task backbones sat inside the first one name
    them ``backbone.task_copies.N.``: they are read under today's names."""
    old = "backbone.task_copies."
    state = {f"task_backbones.{k[len(old):]}" if k.startswith(old) else k: v for k, v in state.items()}
    why = state_mismatch(state, model.trainable_state_dict())
    if not why:
        with torch.no_grad():
            current = dict(model.named_parameters()) | dict(model.named_buffers())
            for k, v in state.items():
                current[k].copy_(v)
    return why


def load_adapter(model: MultiTaskModel, path: str | Path, allow_other_base: bool = False) -> None:
    """Load an adapter file into ``model``; a file for another backbone, method or task set is refused,
    and so is one trained on other base weights unless ``allow_other_base`` (files that predate the
    record are not checked)."""
    path = Path(path)
    cfg = read_adapter_config(path)
    own = adapter_config(model)
    # Keys a file may predate take the value every model had then (hrnet, stage taps with their norm, ...).
    file_has = cfg | {k: cfg.get(k, v) for k, v in OLDER_DEFAULTS.items()}
    file_has["task_groups"] = cfg.get("task_groups") or [cfg.get("tasks")]
    if cfg.get("method") == model.method.name and isinstance(cfg.get("hparams"), dict):
        try:  # a field the file predates takes its default; an unknown one is refused by name
            file_has["hparams"] = read_config(type(model.method.cfg), cfg["hparams"], model.method.name).to_dict()
        except ConfigError as exc:
            raise WeightsError(f"adapter {path}: {exc}") from None
    diffs = [f"{k}: file has {file_has.get(k)!r}, model has {own[k]!r}"
             for k in ("backbone", "method", "decoder", "decoder_ratio", "taps", "tap_norm", "tasks", "task_groups",
                       "hparams") if file_has.get(k) != own[k]]
    if diffs:
        raise WeightsError(f"adapter {path} does not fit this model ({'; '.join(diffs)})")
    base = cfg.get("base_weights")
    if isinstance(base, dict) and not allow_other_base and base.get("sha256") != model.base_weights["sha256"]:
        raise WeightsError(f"adapter {path} was trained on base weights {base.get('name')!r} "
                           f"(sha256 {_short(base.get('sha256'))}), not on {model.base_weights['name']!r} "
                           f"(sha256 {_short(model.base_weights['sha256'])}); pass the same weights, "
                           "or allow_other_base=True")
    drawn = model.base_weights.get("init_sha256")
    if isinstance(base, dict) and base.get("init_sha256") and drawn and base["init_sha256"] != drawn \
            and not allow_other_base:
        raise WeightsError(f"adapter {path} was trained on a random backbone drawn from seed {base.get('init_seed')} "
                           f"(digest {_short(base['init_sha256'])}); this model's backbone is another "
                           f"(seed {model.base_weights.get('init_seed')}, digest {_short(drawn)}; another torch "
                           "version may draw other numbers from one seed): build it with vmt_adapter.from_pretrained, "
                           "which draws it again, or pass allow_other_base=True")
    weights = path / WEIGHTS_NAME if path.is_dir() else path.with_name(WEIGHTS_NAME)
    recorded = cfg.get("weights_sha256")
    if recorded is not None and weights.is_file() and sha256_file(weights) != recorded:
        raise WeightsError(f"adapter weights {weights} fail their checksum (adapter.json records another file: "
                           "damaged, or replaced)")
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise WeightsError(f"adapter weights not found: {weights}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"adapter weights {weights} are unreadable: {exc}") from None
    why = load_trainable(model, state)
    if why:
        raise WeightsError(f"adapter weights {weights} do not match this model: {why}")
