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


def test_packages_import_only_downwards() -> None:
    """The layering, read from every module's import statements: commands -> experiments -> reporting ->
    engine -> data | models -> kinds -> the shared modules. No package imports one above it (``api`` and ``cli`` sit on
    top), so the training loop never depends on an experiment or a table."""
    import ast

    package = Path(__file__).resolve().parents[1] / "src" / "vmt_adapter"
    rank = {"__init__": 5, "commands": 5, "cli": 5, "api": 5, "experiments": 4, "reporting": 3, "engine": 2,
            "data": 1, "models": 1, "kinds": 0.5}
    wrong = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        here = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = list(parts[:-1])[: len(parts) - node.level] if node.level > 1 else list(parts[:-1])
            target = (base + (node.module or "").split("."))[0] if base or node.module else here
            if rank.get(target, 0) > rank.get(here, 0) and target != here:
                wrong.append(f"{'/'.join(parts)} imports {target}")
    assert not wrong, wrong
