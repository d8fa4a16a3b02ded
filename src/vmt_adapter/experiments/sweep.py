"""Learning-rate selection for the benchmark: one grid for every method, one seed, a held-out split.

Why: one learning rate for every method favours some (a rate that suits a small adapter overshoots
full fine-tuning). The rule here is fixed in advance and needs nothing but a method's own runs:
train the method once per rate of ``GRID`` (seed 0, the benchmark's budget and training scenes),
evaluate on SynthScenes' ``select`` split (train-distribution scenes no training reads; the reported
``val`` split is never touched), and keep the rate with the highest ``selection_score``: dm against
the ``prior`` row of the same split, i.e. the mean relative gain over the best constant prediction.
A run that failed (non-finite loss) is not eligible; an exact tie goes to the lower rate.

``vmt benchmark --lr-from OUT/sweep.json`` then trains each method at its selected rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..engine.config import load_config
from ..engine.prior import prior_result
from ..engine.score import multi_task_score
from ..errors import ConfigError
from ..fileio import atomic_write
from ..models.adapters import METHODS
from ..reporting.report import render_table
from .processes import train_runs
from .suite import suite_config

GRID = (3e-4, 1e-3, 3e-3)  # half-decade steps, the same for every method
SPLIT = "select"
NUM_SELECT = 200  # scenes of the select split the selection reads
SEED = 0


def selection_score(metrics: Mapping[str, float], prior: Mapping[str, float]) -> float:
    """dm (%) of a run's headline metrics against the prior's on the selection split."""
    return multi_task_score(metrics, prior)


def select(runs: Sequence[Mapping]) -> dict[str, dict]:
    """Per method, the run (``method``, ``lr``, ``score``; score None = failed) with the highest score.

    Ties go to the lower learning rate; a method whose every run failed is left out.
    """
    best: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: r["lr"]):
        if run["score"] is None:
            continue
        current = best.get(run["method"])
        if current is None or run["score"] > current["score"]:
            best[run["method"]] = {"lr": run["lr"], "score": run["score"]}
    return best


def run_dir(out: Path, method: str, lr: float) -> Path:
    return out / method / f"lr-{lr:g}"


def sweep_overrides(overrides: Sequence[str], lr: float) -> list[str]:
    return [f"data.num_val={NUM_SELECT}", *overrides, f"train.lr={lr}", f"eval.split={SPLIT}", f"seed={SEED}"]


def run_sweep(suite: str, out: Path, methods: Sequence[str] | None = None, lrs: Sequence[float] = GRID,
              overrides: Sequence[str] = (), jobs: int = 1, progress: bool = True, command: str = "",
              train: bool = True, isolated: bool = True) -> dict:
    """Train every (method, rate) not finished yet, method by method, then write ``out/sweep.{json,md}``."""
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not lrs or any(lr <= 0 for lr in lrs):
        raise ConfigError(f"--lrs must be positive learning rates, got {', '.join(map(str, lrs)) or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    queue = [(m, lr) for m in methods for lr in lrs]
    if train:
        train_runs([(suite_config(suite, m, sweep_overrides(overrides, lr)), run_dir(out, m, lr),
                     f"[sweep] {i}/{len(queue)} {m} lr {lr:g}") for i, (m, lr) in enumerate(queue, 1)],
                   isolated=isolated, progress=progress, jobs=jobs)
    prior = prior_result(suite_config(suite, methods[0], sweep_overrides(overrides, lrs[0])))
    runs = []
    for m, lr in queue:
        path = run_dir(out, m, lr) / "eval.json"
        metrics = json.loads(path.read_text())["metrics"] if path.exists() else None
        runs.append({"method": m, "lr": lr, "metrics": metrics,
                     "score": selection_score(metrics, prior["metrics"]) if metrics else None})
    chosen = select(runs)
    cfg = load_config(run_dir(out, *queue[0]) / "config.yaml") if (run_dir(out, *queue[0]) / "config.yaml").exists() \
        else suite_config(suite, methods[0], sweep_overrides(overrides, lrs[0]))
    summary = {"suite": suite, "command": command, "grid": list(lrs), "split": SPLIT, "seed": SEED,
               "num_select": cfg.data.num_val, "criterion": "dm (%) against the prior of the select split, highest "
               "wins, ties to the lower rate", "prior": prior["metrics"], "runs": runs, "selected": chosen}
    atomic_write(out / "sweep.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    atomic_write(out / "sweep.md", lambda tmp: Path(tmp).write_text(sweep_markdown(summary)))
    print(sweep_table(summary))
    print(f"[sweep] wrote {out / 'sweep.json'} and {out / 'sweep.md'}")
    return summary


def sweep_table(summary: Mapping) -> str:
    """Markdown: a row per method, the selection score at every rate, the chosen rate last."""
    grid = summary["grid"]
    score = {(r["method"], r["lr"]): r["score"] for r in summary["runs"]}
    methods = list(dict.fromkeys(r["method"] for r in summary["runs"]))
    lines = []
    for m in methods:
        cells = ["-" if score.get((m, lr)) is None else f"{score[(m, lr)]:+.2f}" for lr in grid]
        chosen = summary["selected"].get(m)
        lines.append([m, *cells, "-" if chosen is None else f"{chosen['lr']:g}"])
    return render_table(["method", *[f"lr {lr:g}" for lr in grid], "selected lr"], lines, markdown=True)


def sweep_markdown(summary: Mapping) -> str:
    return "\n".join([
        f"# Learning-rate sweep `{summary['suite']}`",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"Cells: selection score, dm (%) against the prior on {summary['num_select']} `{summary['split']}` scenes "
        f"(held out of train, never the reported val split), seed {summary['seed']}. Rule: {summary['criterion']}.",
        "",
        sweep_table(summary),
        "",
    ])


def load_selection(path: Path) -> dict[str, float]:
    """Method -> selected learning rate from a ``sweep.json``; one line naming the file on any fault."""
    try:
        selected = json.loads(Path(path).read_text())["selected"]
        return {m: float(v["lr"]) for m, v in selected.items()}
    except FileNotFoundError:
        raise ConfigError(f"--lr-from: file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--lr-from {path}: not a sweep.json with a 'selected' mapping of method to "
                          f"{{'lr': ...}} ({type(exc).__name__}: {exc})") from None
