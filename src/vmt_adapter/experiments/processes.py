"""Training runs in child processes, a few at a time: what ``vmt benchmark``, ``vmt sweep`` and the demo share.

Each run trains in a fresh interpreter (``python -m vmt_adapter.experiments.processes RUN_DIR``) on the config
saved in its folder, so that its peak memory is its own; ``RECORD`` in the folder holds its wall time and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..device import load_average, peak_memory_mb, pick_device, reset_peak_memory
from ..engine.config import RunConfig, flatten_config, load_config, save_config
from ..engine.train import train
from ..errors import ConfigError, VMTError

RECORD = "benchmark.json"  # per run directory: wall time and peak memory of the process that finished it


def _max_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def measure(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, isolated: bool,
            status: str | None = None) -> dict:
    """Train one method and write its ``RECORD``; a ``VMTError`` (e.g. a non-finite loss) is recorded, not raised."""
    device = pick_device(cfg.device)
    reset_peak_memory(device)
    load = load_average()
    start = time.perf_counter()
    try:
        trainer = train(cfg, run_dir, resume=resume, progress=progress, status=status)
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


def _check_same_config(cfg: RunConfig, run_dir: Path) -> None:
    """A finished run is reused only if it had this very config: the table's premise is one budget."""
    saved, now = flatten_config(load_config(run_dir / "config.yaml").to_dict()), flatten_config(cfg.to_dict())
    diffs = [k for k in now if saved.get(k) != now[k]]
    if diffs:
        raise ConfigError(f"{run_dir} was trained with a different config ({', '.join(diffs)}); "
                          "use another --out or the same settings")


def _start_child(run_dir: Path, resume: bool, progress: bool, threads: int | None,
                 status: str | None = None) -> subprocess.Popen:
    """Start ``measure`` in a fresh interpreter (this module's ``__main__``) on the config saved in ``run_dir``."""
    cmd = [sys.executable, "-m", "vmt_adapter.experiments.processes", str(run_dir)]
    cmd += ["--resume"] * resume + ["--no-progress"] * (not progress) + (["--status", status] if status else [])
    env = dict(os.environ) | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    return subprocess.Popen(cmd, env=env)


def _finish_child(run_dir: Path, proc: subprocess.Popen) -> None:
    code = proc.wait()
    if code == 130:
        raise KeyboardInterrupt
    if code and not (run_dir / RECORD).exists():  # killed, or crashed outside VMTError
        (run_dir / RECORD).write_text(json.dumps({"error": f"training process exited with code {code}"}))


def _first_done(running: Sequence[tuple[Path, subprocess.Popen]]) -> int:
    """Index of the first child to exit (polled): a free core takes the next run at once."""
    while True:
        for i, (_, proc) in enumerate(running):
            if proc.poll() is not None:
                return i
        time.sleep(0.5)


def _prepare(cfg: RunConfig, run_dir: Path, tag: str) -> bool | None:
    """None if ``run_dir`` holds a finished run of ``cfg`` (reused), else whether to resume it."""
    finished, resume = (run_dir / "eval.json").exists(), (run_dir / "last.pt").exists()
    if finished or resume:
        _check_same_config(cfg, run_dir)
    if finished:
        print(f"{tag}: finished in {run_dir}, reusing it", flush=True)
        return None
    print(f"{tag}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECORD).unlink(missing_ok=True)
    return resume


def train_runs(runs: Sequence[tuple[RunConfig, Path, str]], isolated: bool, progress: bool, jobs: int = 1) -> None:
    """Train every ``(config, run_dir, tag)`` not finished yet, up to ``jobs`` child processes at once.

    ``tag`` starts the run's progress lines; without ``isolated`` the runs train in this process.

    Parallel children split the machine's cores between them (``OMP_NUM_THREADS``): on small models
    PyTorch's CPU kernels gain little from a second thread, so two one-thread trainings side by side
    finish well before the same two trainings one after the other with two threads each.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    running: list[tuple[Path, subprocess.Popen]] = []
    try:
        for cfg, run_dir, tag in runs:
            resume = _prepare(cfg, run_dir, tag)
            if resume is None:
                continue
            if not isolated:
                measure(cfg, run_dir, resume, progress, isolated=False)
                continue
            save_config(cfg, run_dir / "config.yaml")
            # Children side by side print status lines instead of progress bars that would overwrite each other.
            bars = progress and jobs == 1
            running.append((run_dir, _start_child(run_dir, resume, bars, threads,
                                                  tag if progress and not bars else None)))
            while len(running) >= jobs:
                _finish_child(*running.pop(_first_done(running)))
        while running:
            _finish_child(*running.pop(_first_done(running)))
    except KeyboardInterrupt:
        for _, proc in running:
            proc.wait()  # the children got the signal too; let them save their checkpoints
        raise


def _main(argv: Sequence[str] | None = None) -> int:
    """The per-method process: ``python -m vmt_adapter.experiments.processes RUN_DIR [--resume] [--no-progress]``."""
    p = argparse.ArgumentParser(prog="python -m vmt_adapter.experiments.processes")
    p.add_argument("run_dir", type=Path, help="a run directory holding the config.yaml to train")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--status", help="print a line starting with this every few seconds")
    args = p.parse_args(argv)
    try:
        record = measure(load_config(args.run_dir / "config.yaml"), args.run_dir, args.resume,
                         not args.no_progress, isolated=True, status=args.status)
    except KeyboardInterrupt:
        return 130
    if "error" in record:
        print(f"[benchmark] {args.run_dir.name}: {record['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
