"""``vmt benchmark`` end to end: every method trains a few tiny steps in one call, results are written, resume skips."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from vmt_adapter.cli import main
from vmt_adapter.models.adapters import METHODS

TINY = ["model.pretrained=", "data.size=64", "data.num_train=16", "data.num_val=4", "model.bottleneck=16",
        "train.batch_size=2", "train.log_every=1", "eval.batch_size=4"]


def benchmark(out: Path, *args: str, extra: tuple[str, ...] = ()) -> int:
    """``vmt benchmark`` in-process on tiny inputs (one start-up for every method)."""
    sets = [arg for item in TINY + list(extra) for arg in ("--set", item)]
    return main(["benchmark", "--suite", "synth", "--out", str(out), *sets, *args, "--no-subprocess", "--no-progress"])


def mtimes(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


def test_every_method_trains_and_resume_skips_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert benchmark(out, "--steps", "2") == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == list(METHODS)
    for row in rows:
        run = Path(row["run_dir"])
        losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(losses) == 2 and all(map(math.isfinite, losses)), row["method"]
        assert row["error"] is None and set(row["metrics"]) == {"semseg", "human_parts", "sal", "normals"}
        assert all(v is None or math.isfinite(v) for v in row["metrics"].values()), row
        assert row["trainable_params"] > 0 and row["wall_s"] > 0
        assert row["backbone_passes"] == (1 if METHODS[row["method"]].one_pass else 4)
    by_method = {r["method"]: r for r in rows}
    assert by_method["st-full"]["dm"] == 0.0
    assert by_method["decoder-only"]["adapter_params"] == 0 < by_method["vmt"]["adapter_params"]
    markdown = (out / "results.md").read_text()
    assert all(f"| {m} |" in markdown for m in METHODS) and "vmt benchmark --suite synth" in markdown

    # Second call: finished methods are read back untouched; a half-finished one (no eval.json) is resumed.
    (out / "lora" / "eval.json").unlink()
    before = {m: mtimes(out / m) for m in METHODS if m != "lora"}
    start = time.perf_counter()
    assert benchmark(out, "--steps", "2") == 0
    assert time.perf_counter() - start < 30
    assert {m: mtimes(out / m) for m in before} == before
    again = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert again["lora"]["resumed"] and again["lora"]["metrics"] == by_method["lora"]["metrics"]
    assert again["vmt"] == by_method["vmt"]


def test_a_finished_run_with_another_budget_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert benchmark(out, "--methods", "decoder-only", "--steps", "1") == 0
    assert benchmark(out, "--methods", "decoder-only", "--steps", "2") == 2
    assert "train.steps" in capsys.readouterr().err


def test_a_failing_method_is_reported_not_fatal(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert benchmark(out, "--methods", "vmt", "--steps", "1", extra=("model.hparams={bogus: 1}",)) == 1
    (row,) = json.loads((out / "results.json").read_text())
    assert "bogus" in row["error"] and row["metrics"] == {}
    assert "vmt failed" in (out / "results.md").read_text()
