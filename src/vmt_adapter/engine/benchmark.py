"""Every method trained under one budget on one suite, then one table: quality, dm and cost.

Each method trains the pretrained, frozen ``swin_nano`` of the suite's config with the same data,
steps, batch, learning rate and seed; only ``model.method`` and the method's own size keywords
(``HPARAMS``) change. By default each method trains in a fresh Python process so that its peak
resident memory is its own; ``isolated=False`` trains in this process (faster to start, used by
the tests; CPU peak memory is then not measured, since a process's peak RSS only ever grows).

Resumable: a method whose run directory holds ``eval.json`` is read, not re-run (after checking
that it was trained with the same config); a half-finished one is resumed from its checkpoint.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..commands.report import format_table
from ..device import peak_memory_mb, pick_device, reset_peak_memory
from ..errors import ConfigError, VMTError
from ..models.adapters import METHODS
from .config import RunConfig, load_config, save_config
from .score import load_results, multi_task_score
from .train import train

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
SUITES = {"synth": "synth-vmt.yaml"}  # suite -> base config; model.method is overridden per method
REFERENCE = "st-full"  # dm of every row is against this method's run in the same benchmark
RECORD = "benchmark.json"  # per run directory: wall time and peak memory of the process that finished it

# Width-like sizes on swin_nano: each method's own default (its Swin-T setting) halved, because
# swin_nano is half as wide as Swin-T (48 vs 96 channels), as the synth config already halves
# VMT's k (model.bottleneck 128 -> 64). A rule applied alike, not a tuning; methods absent here
# have no width-like keyword and take their defaults.
HPARAMS: dict[str, dict[str, Any]] = {
    "adapter": {"hidden": 32},
    "lora": {"rank": 4, "alpha": 4.0},
    "mtlora": {"rank": 32, "task_rank": 2},
}


def method_config(suite: str, method: str, overrides: Sequence[str], config_dir: Path = CONFIG_DIR) -> RunConfig:
    """The suite's config for ``method``: its ``HPARAMS``, then the user's overrides (which win)."""
    if suite not in SUITES:
        raise ConfigError(f"suite {suite!r}: choose from {', '.join(SUITES)}")
    own = [f"model.method={method}", f"model.hparams={json.dumps(HPARAMS.get(method, {}))}"]
    return load_config(config_dir / SUITES[suite], own + list(overrides))


def _load_average() -> float | None:
    """The 1-minute load average: wall times on a shared machine mean little without it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _max_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def measure(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, isolated: bool) -> dict:
    """Train one method and write its ``RECORD``; a ``VMTError`` (e.g. a non-finite loss) is recorded, not raised."""
    device = pick_device(cfg.device)
    reset_peak_memory(device)
    load = _load_average()
    start = time.perf_counter()
    try:
        trainer = train(cfg, run_dir, resume=resume, progress=progress)
    except VMTError as exc:
        record: dict[str, Any] = {"error": str(exc)}
    else:
        if trainer.interrupted:
            raise KeyboardInterrupt
        peak = peak_memory_mb(device)
        if peak is not None:
            kind = "CUDA max allocated"
        elif isolated:
            peak, kind = _max_rss_mb(), "max RSS of the method's process"
        else:
            kind = "not measured (in-process run)"
        record = {"wall_s": time.perf_counter() - start, "peak_mem_mb": peak, "memory": kind, "resumed": resume,
                  "device": str(device), "load_average_at_start": load}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECORD).write_text(json.dumps(record, indent=2))
    return record


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys, so that a config mismatch is named key by key (a method's hparams count as one key)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "hparams":
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def _check_same_config(cfg: RunConfig, run_dir: Path) -> None:
    """A finished run is reused only if it had this very config: the table's premise is one budget."""
    saved, now = _flatten(load_config(run_dir / "config.yaml").to_dict()), _flatten(cfg.to_dict())
    diffs = [k for k in now if saved.get(k) != now[k]]
    if diffs:
        raise ConfigError(f"{run_dir} was trained with a different config ({', '.join(diffs)}); "
                          "use another --out or the same settings")


def _train_in_child(run_dir: Path, resume: bool, progress: bool) -> None:
    """Run ``measure`` in a fresh interpreter (this module's ``__main__``), on the config saved in ``run_dir``."""
    cmd = [sys.executable, "-m", "vmt_adapter.engine.benchmark", str(run_dir)]
    cmd += ["--resume"] * resume + ["--no-progress"] * (not progress)
    proc = subprocess.Popen(cmd)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.wait()  # the child got the signal too; let it save its checkpoint
        raise
    if code == 130:
        raise KeyboardInterrupt
    if code and not (run_dir / RECORD).exists():  # killed, or crashed outside VMTError
        (run_dir / RECORD).write_text(json.dumps({"error": f"training process exited with code {code}"}))


def run_method(suite: str, method: str, out: Path, overrides: Sequence[str], isolated: bool, progress: bool,
               tag: str = "") -> None:
    """Train ``method`` into ``out/method`` unless it has finished there; resume it if it has a checkpoint."""
    cfg = method_config(suite, method, overrides)
    run_dir = out / method
    finished, resume = (run_dir / "eval.json").exists(), (run_dir / "last.pt").exists()
    if finished or resume:
        _check_same_config(cfg, run_dir)
    if finished:
        print(f"[benchmark] {tag or method}: finished in {run_dir}, reusing it", flush=True)
        return
    print(f"[benchmark] {tag or method}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECORD).unlink(missing_ok=True)
    if isolated:
        save_config(cfg, run_dir / "config.yaml")
        _train_in_child(run_dir, resume, progress)
    else:
        measure(cfg, run_dir, resume, progress, isolated=False)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def collect_rows(out: Path, methods: Sequence[str], num_tasks: int) -> list[dict]:
    """One results row per method, dm against ``REFERENCE`` when it was run and can be computed."""
    ref_file = out / REFERENCE / "eval.json"
    reference = load_results(ref_file)["metrics"] if REFERENCE in methods and ref_file.exists() else None
    rows = []
    for method in methods:
        run_dir = out / method
        result, record = _read(run_dir / "eval.json"), _read(run_dir / RECORD)
        dm = None
        if result and reference is not None:
            try:
                dm = multi_task_score(load_results(run_dir / "eval.json")["metrics"], reference)
            except ConfigError:  # no task in common, or a zero reference metric: dm is undefined
                dm = None
        params = result.get("params", {})
        rows.append({
            "method": method,
            "metrics": result.get("metrics", {}),
            "details": result.get("details", {}),
            "dm": dm,
            "adapter_params": params.get("adapter"),
            "trainable_params": params.get("trainable"),
            "backbone_passes": 1 if METHODS[method].one_pass else num_tasks,
            "hparams": _read(run_dir / "adapter.json").get("hparams"),
            "wall_s": record.get("wall_s"),
            "peak_mem_mb": record.get("peak_mem_mb"),
            "memory": record.get("memory"),
            "resumed": record.get("resumed"),
            "load_average_at_start": record.get("load_average_at_start"),
            "error": record.get("error") if not result else None,
            "run_dir": str(run_dir),
        })
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def results_table(rows: Sequence[dict]) -> str:
    """``report.format_table``'s name and task columns, then dm, parameters and cost columns."""
    base = format_table([{"name": r["method"], "dm": None, "trainable": None,
                          "metrics": {t: v for t, v in r["metrics"].items() if v is not None}} for r in rows],
                        markdown=True)
    head, rule, *lines = base.splitlines()
    extra = ["dm vs st-full (%) ↑", "adapter params", "trainable params", "backbone passes", "wall (s)",
             "peak mem (MB)"]
    cells = [[_fmt(r["dm"], "+.2f"), _fmt(r["adapter_params"], ","), _fmt(r["trainable_params"], ","),
              _fmt(r["backbone_passes"], "d"), _fmt(r["wall_s"], ".0f") + ("*" if r["resumed"] else ""),
              _fmt(r["peak_mem_mb"], ".0f")] for r in rows]
    return "\n".join([head + " " + " | ".join(extra) + " |", rule + "---:|" * len(extra)]
                     + [line + " " + " | ".join(c) + " |" for line, c in zip(lines, cells)])


def _machine(rows: Sequence[dict]) -> str:
    loads = [r["load_average_at_start"] for r in rows if r["load_average_at_start"] is not None]
    load = f"1-min load average {min(loads):.1f} to {max(loads):.1f} at the methods' starts" if loads else "load n/a"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs ({load}), Python {platform.python_version()}, "
            f"torch {torch.__version__} with {torch.get_num_threads()} intra-op threads")


def results_markdown(rows: Sequence[dict], cfg: RunConfig, suite: str, command: str) -> str:
    t, d = cfg.train, cfg.data
    notes = [
        f"- Same budget for every method, nothing tuned per method: {t.steps} steps x batch {t.batch_size} at "
        f"{d.size} px, AdamW lr {t.lr:g} (weight decay {t.weight_decay:g}, none on 1-D parameters), {t.warmup_steps} "
        f"warm-up steps then cosine, gradient clipping {t.grad_clip:g}, {t.precision}, seed {cfg.seed}; "
        f"{d.num_train or 'default'} training scenes; evaluation on {d.num_val or 'the default'} {cfg.eval.split} "
        f"scenes at {d.size}x{d.size}. Backbone {cfg.model.backbone}, weights "
        f"`{cfg.model.pretrained or 'random init'}`.",
        "- Method keywords (only width-like sizes are set: each method's own default halved for swin_nano, "
        "half as wide as Swin-T): "
        + "; ".join(f"{r['method']} {json.dumps(r['hparams'])}" for r in rows if r["hparams"]) + ".",
        f"- dm (%): 100/T sum_t s_t (M_t - M_st-full,t) / M_st-full,t over the tasks both report, against the "
        f"{REFERENCE} run of this benchmark; `-` when that run is absent or dm is undefined.",
        "- adapter params: the method's PEFT parameters only (the scope of the paper's 1.13 M); trainable params: "
        "everything trained, decoders included (DESIGN.md 1.3).",
        "- backbone passes: per image, to serve all tasks (per-task methods run the backbone once per task).",
        "- wall (s): the method's whole training call (model build, training, final evaluation; not the "
        "interpreter start); `*` marks a resumed run, whose time and memory are those of its last segment only.",
        "- peak mem: " + "; ".join(sorted({r["memory"] for r in rows if r["memory"]})) + ".",
    ]
    failed = [f"- {r['method']} failed: {r['error']}" for r in rows if r["error"]]
    return "\n".join([
        f"# Benchmark `{suite}`: every method under one budget",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_machine(rows)}; device {pick_device(cfg.device)}. "
        f"Written {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}.",
        "",
        results_table(rows),
        "",
        *notes,
        *failed,
        "",
    ])


def run_benchmark(suite: str, out: Path, methods: Sequence[str] | None = None, overrides: Sequence[str] = (),
                  isolated: bool = True, progress: bool = True, command: str = "") -> list[dict]:
    """Train (or reuse) every method, then write ``out/results.json`` and ``out/results.md``."""
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    out.mkdir(parents=True, exist_ok=True)
    for i, method in enumerate(methods, 1):
        run_method(suite, method, out, overrides, isolated, progress, tag=f"{i}/{len(methods)} {method}")
    common = method_config(suite, methods[0], overrides)  # all but model.method and hparams are shared
    rows = collect_rows(out, methods, len(common.tasks))
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text(results_markdown(rows, common, suite, command))
    print(results_table(rows))
    print(f"[benchmark] wrote {out / 'results.json'} and {out / 'results.md'}")
    return rows


def _main(argv: Sequence[str] | None = None) -> int:
    """The per-method process: ``python -m vmt_adapter.engine.benchmark RUN_DIR [--resume] [--no-progress]``."""
    p = argparse.ArgumentParser(prog="python -m vmt_adapter.engine.benchmark")
    p.add_argument("run_dir", type=Path, help="a run directory holding the config.yaml to train")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        record = measure(load_config(args.run_dir / "config.yaml"), args.run_dir, args.resume,
                         not args.no_progress, isolated=True)
    except KeyboardInterrupt:
        return 130
    if "error" in record:
        print(f"[benchmark] {args.run_dir.name}: {record['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
