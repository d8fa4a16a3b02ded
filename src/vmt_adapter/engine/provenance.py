"""``run.json``: what produced a run (source commit, versions, device, machine, command line, start time).

Why: a number in a results table is only as good as the ability to say which code, libraries and
hardware made it. The record names no host (no hostname, user or path of the machine) so that run
folders can be shared. A fresh start writes it; each ``--resume`` keeps that first record and
appends its own under ``resumes``, so the file tells how many processes a run took and where.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from .. import __version__
from ..errors import ConfigError
from ..fileio import atomic_write, read_json

RUN_RECORD = "run.json"
LIBRARIES = ("torch", "timm", "numpy")
GIT_TIMEOUT_S = 10


def _git(source: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, check=True,
                          timeout=GIT_TIMEOUT_S).stdout.strip()


PACKAGE = Path(__file__).resolve().parents[1]


def git_state(source: Path = PACKAGE) -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``source`` (the package), or None when it is
    not tracked by one (an installed wheel; a package inside some other repository's ignored folder)
    or git is missing. ``dirty``: tracked files differ from the commit (untracked files do not count)."""
    try:
        _git(source, "ls-files", "--error-unmatch", "__init__.py")  # the package itself is under version control
        commit = _git(source, "rev-parse", "HEAD")
        dirty = bool(_git(source, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _library_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine(device: torch.device) -> dict:
    """The hardware and OS, without naming the host."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def provenance(device: torch.device, world_size: int, step: int) -> dict:
    """The record of one process start of a training run at ``step`` (0 for a fresh run)."""
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "step": step,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),  # no install path: it may name the user
        "git": git_state(),
        "versions": {"vmt_adapter": __version__, "python": platform.python_version(),
                     **{name: _library_version(name) for name in LIBRARIES}},
        "device": str(device),
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(device),
    }


def read_record(run_dir: Path) -> dict | None:
    """A run's ``run.json``; None when it has none (a run older than the record, or not a run folder)."""
    path = run_dir / RUN_RECORD
    if not path.exists():
        return None
    record = read_json(path, "a run record")
    if not isinstance(record, dict) or not isinstance(record.get("resumes", []), list):
        raise ConfigError(f"{path}: expected a JSON object whose 'resumes' is a list")
    return record


def record_start(run_dir: Path, device: torch.device, world_size: int, step: int, resume: bool) -> dict:
    """Write ``run.json`` for a process that starts training: a fresh run's record, or the first
    record with this resume appended (a run without one, or with a damaged one, starts it here:
    provenance never stops a training)."""
    now = provenance(device, world_size, step)
    try:
        first = read_record(run_dir) if resume else None
    except ConfigError:
        first = None
    record = {**first, "resumes": [*first.get("resumes", []), now]} if first else {**now, "resumes": []}
    atomic_write(run_dir / RUN_RECORD, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    return record
