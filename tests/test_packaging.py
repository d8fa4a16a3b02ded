"""A plain (non-editable) install works away from the checkout: configs and weights are package data."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_trains_with_shipped_config_names(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("vmt_adapter-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    target = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies (torch, timm, ...) come from this environment; the package itself only from the wheel.
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (target / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import vmt_adapter; print(vmt_adapter.__file__)"], check=True,
                           capture_output=True, text=True, cwd=work).stdout
    assert where.startswith(str(target)), where  # not the checkout
    assert (target / "vmt_adapter" / "py.typed").is_file()  # type checkers read the package's hints
    cli = [str(py), "-m", "vmt_adapter.cli"]
    assert "benchmark" in subprocess.run(cli + ["--help"], check=True, capture_output=True, text=True, cwd=work).stdout
    sets = ["data.size=32", "data.num_train=4", "data.num_val=2", "train.batch_size=2", "data.cache_dir=",
            "train.warmup_steps=1", "eval.batch_size=2"]
    args = cli + ["train", "--config", "synth-vmt", "--steps", "1", "--out", "run", "--no-progress"]
    done = subprocess.run(args + [a for s in sets for a in ("--set", s)], capture_output=True, text=True, cwd=work,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "run" / "eval.json").is_file()
