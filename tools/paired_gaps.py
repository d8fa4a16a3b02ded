"""Per-seed paired differences between two methods of one `vmt benchmark` run, as a markdown table.

Usage: python tools/paired_gaps.py runs/benchmark-synth/results.json vmt decoder-only
Pairing by seed removes what the seed does to both methods alike (the same batches and augmentation);
a gap is in the same direction "in every seed" only where every row has the same sign.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

LOWER_IS_BETTER = {"normals", "depth"}


def paired(results: dict, a: str, b: str) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """Tasks and, per seed, metric(a) - metric(b) for each task."""
    rows = []
    tasks: list[str] = []
    for seed, per_method in sorted(results["per_seed"].items(), key=lambda kv: int(kv[0])):
        by_name = {r["method"]: r["metrics"] for r in per_method}
        if not by_name.get(a) or not by_name.get(b):
            continue
        tasks = [t for t in by_name[a] if t in by_name[b]]
        rows.append((seed, [by_name[a][t] - by_name[b][t] for t in tasks]))
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


def main(path: Path, a: str, b: str) -> None:
    tasks, rows = paired(json.loads(path.read_text()), a, b)
    if not rows:
        sys.exit(f"{path}: no seed has results for both {a!r} and {b!r}")
    print(f"{a} minus {b} (for tasks marked ↓, negative is better)\n")
    print(markdown(tasks, rows))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
