"""Per-seed paired differences between two methods of one `vmt benchmark` run, as a markdown table.

Usage: python tools/paired_gaps.py runs/benchmark-synth/results.json vmt decoder-only
       python tools/paired_gaps.py runs/variant/results.json vmt vmt runs/benchmark-synth/results.json
(the second form: method A of the first file minus method B of the second, e.g. a setting against the default)
Pairing by seed removes what the seed does to both methods alike (the same batches and augmentation);
a gap is in the same direction "in every seed" only where every row has the same sign.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

LOWER_IS_BETTER = {"normals", "depth"}


def paired(results: dict, a: str, b: str, other: dict | None = None) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """Tasks and, per seed, metric(a) - metric(b) for each task; ``b`` read from ``other`` when given."""
    rows = []
    tasks: list[str] = []
    others = (other or results)["per_seed"]
    for seed, per_method in sorted(results["per_seed"].items(), key=lambda kv: int(kv[0])):
        mine = {r["method"]: r["metrics"] for r in per_method}.get(a)
        theirs = {r["method"]: r["metrics"] for r in others.get(seed, [])}.get(b)
        if not mine or not theirs:
            continue
        tasks = [t for t in mine if t in theirs]
        rows.append((seed, [mine[t] - theirs[t] for t in tasks]))
    return tasks, rows


def markdown(tasks: list[str], rows: list[tuple[str, list[float]]]) -> str:
    """The per-seed table plus a mean ± sample std row."""
    lines = ["| seed | " + " | ".join(f"{t}{' ↓' if t in LOWER_IS_BETTER else ''}" for t in tasks) + " |",
             "|---:|" + "---:|" * len(tasks)]
    lines += [f"| {s} | " + " | ".join(f"{v:+.2f}" for v in vals) + " |" for s, vals in rows]
    cols = list(zip(*(vals for _, vals in rows)))
    if len(rows) > 1:
        lines.append("| mean ± std | " + " | ".join(
            f"{statistics.fmean(c):+.2f} ± {statistics.stdev(c):.2f}" for c in cols) + " |")
    return "\n".join(lines)


def main(path: Path, a: str, b: str, other: Path | None = None) -> None:
    tasks, rows = paired(json.loads(path.read_text()), a, b, json.loads(other.read_text()) if other else None)
    if not rows:
        sys.exit(f"{path}{f' and {other}' if other else ''}: no seed has results for both {a!r} and {b!r}")
    print(f"{a}{f' ({path})' if other else ''} minus {b}{f' ({other})' if other else ''} "
          "(for tasks marked ↓, negative is better)\n")
    print(markdown(tasks, rows))


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]) if len(sys.argv) == 5 else None)
