"""``vmt benchmark`` end to end: every method trains a few tiny steps in one call, results are written, resume skips."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from vmt_adapter.cli import main
from vmt_adapter.models.adapters import METHODS

TINY = ["model.pretrained=", "data.cache_dir=", "data.size=64", "data.num_train=16", "data.num_val=4",
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
    summary = json.loads((out / "results.json").read_text())
    rows, per_seed = summary["rows"], summary["per_seed"]["0"]
    assert [r["method"] for r in rows] == [r["method"] for r in per_seed] == list(METHODS)
    assert summary["prior"]["name"] == "prior" and set(summary["prior"]["metrics"]) == set(rows[0]["metrics"])
    assert (out / "dm_vs_params.png").stat().st_size > 0
    for row in per_seed:
        run = Path(row["run_dir"])
        losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
        assert len(losses) == 2 and all(map(math.isfinite, losses)), row["method"]
        assert row["error"] is None and set(row["metrics"]) == {"semseg", "human_parts", "sal", "normals"}
        assert all(v is None or math.isfinite(v) for v in row["metrics"].values()), row
        assert row["trainable_params"] > 0 and row["wall_s"] > 0
        assert row["backbone_passes"] == (1 if METHODS[row["method"]].one_pass else 4)
    by_method = {r["method"]: r for r in rows}
    assert by_method["st-full"]["dm"] == 0.0
    assert by_method["decoder-only"]["adapter_params"] == 0 < by_method["vmt"]["adapter_params"]
    markdown = (out / "results.md").read_text()
    assert all(f"| {m} |" in markdown for m in [*METHODS, "prior"]) and "vmt benchmark --suite synth" in markdown
    assert "Kendall tau" in markdown and summary["kendall_tau"]["methods"] == len(METHODS)

    # Second call: finished methods are read back untouched; a half-finished one (no eval.json) is resumed.
    seed0 = out / "seed-0"
    (seed0 / "lora" / "eval.json").unlink()
    before = {m: mtimes(seed0 / m) for m in METHODS if m != "lora"}
    start = time.perf_counter()
    assert benchmark(out, "--steps", "2") == 0
    assert time.perf_counter() - start < 30
    assert {m: mtimes(seed0 / m) for m in before} == before
    again = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert again["lora"]["resumed"] and again["lora"]["metrics"] == by_method["lora"]["metrics"]
    assert again["vmt"] == by_method["vmt"]


def test_a_finished_run_with_another_budget_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert benchmark(out, "--methods", "decoder-only", "--steps", "1") == 0
    assert benchmark(out, "--methods", "decoder-only", "--steps", "2") == 2
    assert "train.steps" in capsys.readouterr().err


def test_a_failing_method_is_reported_not_fatal(tmp_path: Path, monkeypatch) -> None:
    from vmt_adapter.errors import VMTError
    from vmt_adapter.experiments import processes

    def fail(*args, **kwargs):
        raise VMTError("loss became non-finite at step 1 (bogus)")

    monkeypatch.setattr(processes, "train", fail)  # a failure during training, as a diverging run gives
    out = tmp_path / "bench"
    assert benchmark(out, "--methods", "vmt", "--steps", "1") == 1
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert "bogus" in row["error"] and row["metrics"] == {}
    assert "vmt failed" in (out / "results.md").read_text()


def test_a_bad_method_field_is_refused_before_any_run(tmp_path: Path, capsys) -> None:
    assert benchmark(tmp_path / "bench", "--methods", "vmt", "--steps", "1", extra=("model.hparams={bogus: 1}",)) == 2
    assert "unknown config key 'model.hparams.bogus'" in capsys.readouterr().err
    assert not (tmp_path / "bench" / "results.json").exists()


def test_seeds_give_mean_and_std_and_parallel_jobs_match(tmp_path: Path) -> None:
    """Two seeds in two parallel child processes: each row's mean and std are those of its two seeds' runs."""
    import statistics

    sets = [arg for item in TINY for arg in ("--set", item)]
    args = ["benchmark", "--suite", "synth", "--out", str(tmp_path / "b"), "--methods", "decoder-only,st-full",
            "--steps", "1", "--seeds", "2", "--jobs", "2", "--no-progress", *sets]
    assert main(args) == 0
    summary = json.loads((tmp_path / "b" / "results.json").read_text())
    for i, row in enumerate(summary["rows"]):
        runs = [summary["per_seed"][s][i] for s in ("0", "1")]
        for task, mean in row["metrics"].items():
            values = [r["metrics"][task] for r in runs]
            assert (math.isclose(mean, sum(values) / 2)
                    and math.isclose(row["metrics_std"][task], statistics.stdev(values)))
        assert row["seeds"] == [0, 1]
    assert summary["rows"][1]["dm"] == 0.0  # st-full against itself, seed by seed
    for seed in (0, 1):
        assert json.loads((tmp_path / "b" / f"seed-{seed}" / "decoder-only" / "eval.json").read_text())["step"] == 1


GOOD_EVAL = {"name": "vmt", "metrics": {"semseg": 20.0, "sal": 30.0}, "params": {"adapter": 1, "trainable": 2}}


def damage_cases() -> dict[str, tuple[str, bytes]]:
    """(file, content) per case: each would have been a traceback or a silently wrong row."""
    good = json.dumps(GOOD_EVAL)
    metrics = lambda m: json.dumps(GOOD_EVAL | {"metrics": m}).encode()  # noqa: E731
    return {"truncated eval": ("eval.json", good[:20].encode()), "list eval": ("eval.json", b"[1, 2]"),
            "binary eval": ("eval.json", b"\x80\x81\xfe\x00"),
            "string metric": ("eval.json", metrics({"semseg": "high"})),
            "impossible miou": ("eval.json", metrics({"semseg": 250.0})),
            "nan": ("eval.json", metrics({"semseg": math.nan})),
            "unknown task": ("eval.json", metrics({"semseg": 20.0, "nope": 1.0})),
            "garbage record": ("benchmark.json", b"\x00\x01garbage"),
            "string wall time": ("benchmark.json", b'{"wall_s": "ten"}'),
            "truncated adapter": ("adapter.json", b'{"hparams": {"bott')}


def test_report_only_on_a_damaged_folder_is_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    for case, (name, content) in damage_cases().items():
        run = tmp_path / case.replace(" ", "-") / "seed-0" / "vmt"
        run.mkdir(parents=True)
        (run / "eval.json").write_text(json.dumps(GOOD_EVAL))
        (run / name).write_bytes(content)
        code = benchmark(run.parents[1], "--report-only", "--methods", "vmt")
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "Traceback" not in err, (case, err)
        assert str(run / name) in err, (case, err)
