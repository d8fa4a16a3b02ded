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

import datetime
import json
import math
import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scipy.stats
import torch

from ..device import pick_device
from ..engine.config import CONFIG_DIR, RunConfig, load_config
from ..engine.prior import prior_result
from ..engine.score import load_results, multi_task_score
from ..errors import ConfigError
from ..fileio import atomic_write, read_json
from ..models.adapters import METHODS
from ..models.published import PUBLISHED_DM
from ..reporting.figures import label_points, method_colour, pyplot, save_figure
from ..reporting.report import render_table
from ..tasks import TASKS
from .processes import RECORD, train_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUITES = {"synth": "synth-vmt.yaml"}  # suite -> base config; model.method is overridden per method
REFERENCE = "st-full"  # dm of every row is against this method's run in the same benchmark

# Width-like sizes on swin_nano: each method's own default (its Swin-T setting) halved, because
# swin_nano is half as wide as Swin-T (48 vs 96 channels), as the synth config halves VMT's k
# (128 -> 64). A rule applied alike, not a tuning; methods absent here have no width-like keyword
# and take their defaults.
HPARAMS: dict[str, dict[str, Any]] = {
    "vmt": {"bottleneck": 64},
    "vmt-lite": {"bottleneck": 64},
    "adapter": {"hidden": 32},
    "lora": {"rank": 4, "alpha": 4.0},
    "mtlora": {"rank": 32, "task_rank": 2},
}


def suite_config(suite: str, method: str, overrides: Sequence[str], config_dir: Path = CONFIG_DIR) -> RunConfig:
    """The suite's config for ``method``: its ``HPARAMS``, then the user's overrides (which win)."""
    if suite not in SUITES:
        raise ConfigError(f"suite {suite!r}: choose from {', '.join(SUITES)}")
    own = [f"model.method={method}", f"model.hparams={json.dumps(HPARAMS.get(method, {}))}"]
    return load_config(config_dir / SUITES[suite], own + list(overrides))


def seed_dir(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}"


def run_all(suite: str, out: Path, methods: Sequence[str], seeds: Sequence[int], overrides: Sequence[str],
            isolated: bool, progress: bool, jobs: int = 1, lrs: Mapping[str, float] | None = None) -> None:
    """Every (seed, method) of a suite, seed by seed, through ``train_runs``; ``lrs``: a rate per method."""
    queue = [(seed, method) for seed in seeds for method in methods]
    train_runs([(suite_config(suite, method, [*overrides, *_lr(lrs, method), f"seed={seed}"]),
                 seed_dir(out, seed) / method,
                 f"[benchmark] {i}/{len(queue)} seed {seed} {method}") for i, (seed, method) in enumerate(queue, 1)],
               isolated, progress, jobs)


def _lr(lrs: Mapping[str, float] | None, method: str) -> list[str]:
    return [f"train.lr={lrs[method]}"] if lrs else []


def _read(path: Path, numbers: Sequence[str] = ()) -> dict:
    """A run file as a JSON object ({} when absent); damage is one line naming the file, and ``numbers``
    must be finite numbers or null where present, since they are averaged."""
    if not path.exists():
        return {}
    data = read_json(path, "a run file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in numbers:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ConfigError(f"{path}: key {key!r} must be a finite number, got {value!r:.40}")
    return data


def collect_rows(out: Path, methods: Sequence[str], num_tasks: int) -> list[dict]:
    """One results row per method of one seed's folder, dm against ``REFERENCE`` when it was run."""
    ref_file = out / REFERENCE / "eval.json"
    reference = load_results(ref_file)["metrics"] if REFERENCE in methods and ref_file.exists() else None
    rows = []
    for method in methods:
        run_dir = out / method
        result, record = _read(run_dir / "eval.json"), _read(run_dir / RECORD, ("wall_s", "peak_mem_mb"))
        metrics = load_results(run_dir / "eval.json")["metrics"] if result else {}  # validated: tasks, ranges
        dm = None
        if result and reference is not None:
            try:
                dm = multi_task_score(metrics, reference)
            except ConfigError:  # no task in common, or a zero reference metric: dm is undefined
                dm = None
        params = result.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{run_dir / 'eval.json'}: key 'params' must be an object")
        rows.append({
            "method": method,
            "metrics": metrics,
            "details": result.get("details", {}),
            "dm": dm,
            "adapter_params": params.get("adapter"),
            "trainable_params": params.get("trainable"),
            "backbone_passes": 1 if METHODS[method].one_pass else num_tasks,
            "hparams": _read(run_dir / "adapter.json").get("hparams"),
            "lr": load_config(run_dir / "config.yaml").train.lr if (run_dir / "config.yaml").exists() else None,
            "wall_s": record.get("wall_s"),
            "peak_mem_mb": record.get("peak_mem_mb"),
            "memory": record.get("memory"),
            "resumed": record.get("resumed"),
            "load_average_at_start": record.get("load_average_at_start"),
            "dataset_version": result.get("dataset_version"),
            "error": record.get("error") if not result else None,
            "run_dir": str(run_dir),
        })
    return rows


def _stats(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the values that exist."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def aggregate(per_seed: dict[int, list[dict]]) -> list[dict]:
    """One row per method over the seeds: mean and std of every metric and of dm, costs as means."""
    seeds = list(per_seed)
    rows = []
    for i, first in enumerate(per_seed[seeds[0]]):
        runs = [per_seed[s][i] for s in seeds]
        tasks = list(dict.fromkeys(t for r in runs for t in r["metrics"]))
        metrics, std = {}, {}
        for t in tasks:
            metrics[t], std[t], _ = _stats([r["metrics"].get(t) for r in runs])
        dm, dm_std, n_dm = _stats([r["dm"] for r in runs])
        wall, _, _ = _stats([r["wall_s"] for r in runs])
        mem, _, _ = _stats([r["peak_mem_mb"] for r in runs])
        rows.append({
            "method": first["method"], "metrics": metrics, "metrics_std": std, "dm": dm, "dm_std": dm_std,
            "seeds": [s for s, r in zip(seeds, runs) if r["metrics"]], "dm_seeds": n_dm,
            "adapter_params": first["adapter_params"], "trainable_params": first["trainable_params"],
            "backbone_passes": first["backbone_passes"], "hparams": first["hparams"], "lr": first.get("lr"),
            "wall_s": wall,
            "peak_mem_mb": mem, "memory": first["memory"], "resumed": any(r["resumed"] for r in runs),
            "load_average_at_start": first["load_average_at_start"], "dataset_version": first["dataset_version"],
            "error": "; ".join(f"seed {s}: {r['error']}" for s, r in zip(seeds, runs) if r["error"]) or None,
        })
    return rows


def kendall_tau(rows: Sequence[dict]) -> dict | None:
    """Rank agreement of the rows' mean dm with the published PASCAL-Context dm of the same methods."""
    pairs = [(r["dm"], PUBLISHED_DM[r["method"]]) for r in rows if r["dm"] is not None and r["method"] in PUBLISHED_DM]
    if len(pairs) < 3:
        return None
    result = scipy.stats.kendalltau([a for a, _ in pairs], [b for _, b in pairs])
    return {"tau": float(result.statistic), "p_value": float(result.pvalue), "methods": len(pairs)}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pm(mean: float | None, std: float | None, spec: str = ".2f") -> str:
    return "-" if mean is None else format(mean, spec) + (f" ± {std:{spec[-3:]}}" if std else "")


def results_table(rows: Sequence[dict], prior: dict | None = None) -> str:
    """Markdown: task columns as mean ± std over seeds, then dm, parameters and cost columns; the prior last."""
    tasks = list(dict.fromkeys(t for r in [*rows, prior or {"metrics": {}}] for t in r["metrics"]))
    specs = [TASKS[t] for t in tasks]
    head = ["method"] + [f"{s.name} {s.headline}{f' ({s.unit})' if s.unit else ''} {'↑' if s.higher_is_better else '↓'}"
                         for s in specs]
    head += ["dm vs st-full (%) ↑", "seeds", "lr", "adapter params", "trainable params", "backbone passes", "wall (s)",
             "peak mem (MB)"]
    lines = []
    for r in rows:
        cells = [r["method"]] + [_pm(r["metrics"].get(t), r.get("metrics_std", {}).get(t)) for t in tasks]
        cells += [_pm(r["dm"], r.get("dm_std"), "+.2f"), str(len(r.get("seeds", [0] if r["metrics"] else []))),
                  _fmt(r.get("lr"), "g"), _fmt(r["adapter_params"], ","),
                  _fmt(r["trainable_params"], ","), _fmt(r["backbone_passes"], "d"),
                  _fmt(r["wall_s"], ".0f") + ("*" if r["resumed"] else ""), _fmt(r["peak_mem_mb"], ".0f")]
        lines.append(cells)
    if prior is not None:
        lines.append(["prior"] + [_pm(prior["metrics"].get(t), None) for t in tasks]
                     + ["-", "-", "-", "0", "0", "0", "-", "-"])
    return render_table(head, lines, markdown=True)


def dm_params_figure(rows: Sequence[dict]) -> Figure:
    """The usual PEFT figure: dm (mean ± std over seeds) against trainable parameters, log x, each point
    labelled in its method's colour without overlaps."""
    shown = [r for r in rows if r["dm"] is not None and r["trainable_params"]]
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    points = [(r["trainable_params"], r["dm"]) for r in shown]
    spreads = [r["dm_std"] or 0 for r in shown]
    colours = [method_colour(r["method"]) for r in shown]
    for (x, y), spread, colour in zip(points, spreads, colours):
        ax.errorbar(x, y, yerr=spread, fmt="o", capsize=3, color=colour)
    ax.set_xscale("log")
    ax.margins(x=0.15)  # room for the outermost points' labels inside the axes
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("trainable parameters (decoders included, log scale)")
    ax.set_ylabel("dm vs st-full (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    label_points(ax, points, [r["method"] for r in shown], colours,
                 extents=[(y - spread, y + spread) for (_, y), spread in zip(points, spreads)])
    return fig


def plot_dm_params(rows: Sequence[dict], path: Path) -> None:
    """``dm_params_figure(rows)`` as a PNG."""
    save_figure(dm_params_figure(rows), path)


def _machine(rows: Sequence[dict]) -> str:
    loads = [r["load_average_at_start"] for r in rows if r["load_average_at_start"] is not None]
    load = f"1-min load average {min(loads):.1f} to {max(loads):.1f} at the methods' starts" if loads else "load n/a"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs ({load}), Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def results_markdown(rows: Sequence[dict], cfg: RunConfig, suite: str, command: str, seeds: Sequence[int],
                     prior: dict | None, tau: dict | None, tuned: bool = False) -> str:
    t, d = cfg.train, cfg.data
    rate = ("AdamW at each method's learning rate as `vmt sweep` selected it (column lr)" if tuned
            else f"nothing tuned per method: AdamW lr {t.lr:g}")
    notes = [
        f"- Same budget for every method: {t.steps} steps x batch {t.batch_size} at "
        f"{d.size} px, {rate} (weight decay {t.weight_decay:g}, none on 1-D parameters), {t.warmup_steps} "
        f"warm-up steps then cosine, gradient clipping {t.grad_clip:g}, {t.precision}; seeds "
        f"{', '.join(map(str, seeds))} (a seed sets initialisation, augmentation and batch order; the scenes are "
        f"the same); {d.num_train or 'default'} training scenes; evaluation on {d.num_val or 'the default'} "
        f"{cfg.eval.split} scenes at {d.size}x{d.size}. Backbone {cfg.model.backbone}, weights "
        f"`{cfg.model.pretrained or 'random init'}`. Dataset {rows[0]['dataset_version'] if rows else '-'}.",
        "- Cells: mean ± sample standard deviation over the seeds that finished (column `seeds`).",
        "- Method keywords (only width-like sizes are set: each method's own default halved for swin_nano, "
        "half as wide as Swin-T): "
        + "; ".join(f"{r['method']} {json.dumps(r['hparams'])}" for r in rows if r["hparams"]) + ".",
        f"- dm (%): 100/T sum_t s_t (M_t - M_st-full,t) / M_st-full,t, per seed against that seed's {REFERENCE} "
        "run, then mean ± std; `-` when that run is absent.",
        "- prior: the best constant prediction per task on the same split (majority label, positive frequency "
        "and mean normal per pixel position), the floor of every column.",
        "- adapter params: the method's PEFT parameters only (the scope of the paper's 1.13 M); trainable params: "
        "everything trained, decoders included (docs/design.md, section 3).",
        "- backbone passes: per image, to serve all tasks (per-task methods run the backbone once per task).",
        "- wall (s): mean over seeds of the method's whole training call (model build, training, final "
        "evaluation); `*` marks a resumed run, whose time and memory are those of its last segment only.",
        "- peak mem: " + "; ".join(sorted({r["memory"] for r in rows if r["memory"]})) + ".",
    ]
    if tau is not None:
        notes.append(f"- Rank agreement with the published PASCAL-Context dm ranking (Swin-T): Kendall tau "
                     f"{tau['tau']:+.2f} over {tau['methods']} methods (p = {tau['p_value']:.2f}).")
    failed = [f"- {r['method']} failed: {r['error']}" for r in rows if r["error"]]
    return "\n".join([
        f"# Benchmark `{suite}`: every method under one budget",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_machine(rows)}; device {pick_device(cfg.device)}. "
        f"Written {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}.",
        "",
        results_table(rows, prior),
        "",
        *notes,
        *failed,
        "",
    ])


def run_benchmark(suite: str, out: Path, methods: Sequence[str] | None = None, overrides: Sequence[str] = (),
                  isolated: bool = True, progress: bool = True, command: str = "", seeds: Sequence[int] = (0,),
                  jobs: int = 1, train: bool = True, lrs: Mapping[str, float] | None = None) -> list[dict]:
    """Train (or reuse) every method for every seed, then write ``out/results.{json,md}`` and the dm figure.

    ``train=False`` only tabulates the runs that have finished (the others show as missing). ``lrs``
    (``vmt sweep``'s selection) gives each method its own learning rate.
    """
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    unselected = [m for m in methods if lrs is not None and m not in lrs]
    if unselected:
        raise ConfigError(f"--lr-from selects no learning rate for {', '.join(unselected)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    if train:
        run_all(suite, out, methods, seeds, overrides, isolated, progress, jobs, lrs)
    common = suite_config(suite, methods[0], overrides)  # all but model.method, hparams and seed are shared
    per_seed = {s: collect_rows(seed_dir(out, s), methods, len(common.tasks)) for s in seeds}
    rows = aggregate(per_seed)
    prior = prior_result(common)
    tau = kendall_tau(rows)
    summary = {"suite": suite, "command": command, "seeds": list(seeds), "rows": rows, "prior": prior,
               "kendall_tau": tau, "per_seed": {str(s): r for s, r in per_seed.items()}}
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(
        results_markdown(rows, common, suite, command, seeds, prior, tau, tuned=lrs is not None)))
    plot_dm_params(rows, out / "dm_vs_params.png")
    print(results_table(rows, prior))
    print(f"[benchmark] wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'dm_vs_params.png'}")
    return rows
