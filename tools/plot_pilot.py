"""The benchmark protocol's budget pilot as a figure: training loss of mt-full at 600 and 1,200 steps.

Usage: python tools/plot_pilot.py runs/pilot docs/benchmarks/synth_pilot_loss.png
(runs/pilot/{600,1200} are the two `vmt benchmark` calls of docs/benchmarks/synth.md's protocol.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def final_loss(rows: list[dict]) -> float:
    """Mean of the logged training losses over the run's last 10 % of steps (the protocol's rule)."""
    steps = rows[-1]["step"]
    tail = [r["loss"] for r in rows if r["step"] > 0.9 * steps]
    return sum(tail) / len(tail)


def main(pilot: Path, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for budget in (600, 1200):
        log = pilot / str(budget) / "seed-0" / "mt-full" / "metrics.jsonl"
        rows = [r for r in map(json.loads, log.read_text().splitlines()) if "losses" in r]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1,
                label=f"{budget} steps (final {final_loss(rows):.3f})")
        print(f"{budget} steps: final training loss {final_loss(rows):.4f}")
    ax.set(xlabel="step", ylabel="training loss (weighted sum of 4 tasks)",
           title="mt-full, lr 1e-3, seed 0: the budget pilot")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
