"""``vmt sweep``: the selection rule on hand-made tables, and the sweep and ``--lr-from`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_benchmark import TINY

from vmt_adapter.cli import main
from vmt_adapter.errors import ConfigError
from vmt_adapter.experiments.sweep import load_selection, select, selection_score


def test_selection_score_is_dm_against_the_prior() -> None:
    # Hand computation: semseg (30 - 10) / 10 = +2.0; normals (lower is better) -(20 - 25) / 25 = +0.2;
    # mean 1.1, in percent 110.
    assert selection_score({"semseg": 30.0, "normals": 20.0}, {"semseg": 10.0, "normals": 25.0}) == pytest.approx(110.0)


def test_select_highest_score_lower_rate_on_ties_and_skips_failed_runs() -> None:
    runs = [
        {"method": "vmt", "lr": 3e-3, "score": None},  # non-finite loss: not eligible
        {"method": "vmt", "lr": 1e-3, "score": 12.5},
        {"method": "vmt", "lr": 3e-4, "score": 10.0},
        {"method": "st-full", "lr": 1e-3, "score": 5.0},
        {"method": "st-full", "lr": 3e-4, "score": 5.0},  # tie with 1e-3: the lower rate
        {"method": "st-full", "lr": 3e-3, "score": -4.0},
        {"method": "bitfit", "lr": 3e-4, "score": None},
        {"method": "bitfit", "lr": 1e-3, "score": None},
    ]
    assert select(runs) == {"vmt": {"lr": 1e-3, "score": 12.5}, "st-full": {"lr": 3e-4, "score": 5.0}}


def test_load_selection_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_selection(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"selected": {"vmt": 0.001}}))
    with pytest.raises(ConfigError, match="bad.json"):
        load_selection(bad)


def test_sweep_then_benchmark_at_the_selected_rates(tmp_path: Path) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    out = tmp_path / "sweep"
    assert main(["sweep", "--out", str(out), "--methods", "decoder-only,vmt", "--lrs", "1e-4,1e-2", *sets,
                 "--set", "train.steps=2", "--no-subprocess", "--no-progress"]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert [(r["method"], r["lr"]) for r in summary["runs"]] == [
        ("decoder-only", 1e-4), ("decoder-only", 1e-2), ("vmt", 1e-4), ("vmt", 1e-2)]
    for r in summary["runs"]:  # evaluated on the held-out split, never val
        assert json.loads((out / r["method"] / f"lr-{r['lr']:g}" / "eval.json").read_text())["split"] == "select"
        assert r["score"] == pytest.approx(selection_score(r["metrics"], summary["prior"]))
    for method, chosen in summary["selected"].items():
        best = max((r for r in summary["runs"] if r["method"] == method), key=lambda r: (r["score"], -r["lr"]))
        assert chosen["lr"] == best["lr"]
    assert "selected lr" in (out / "sweep.md").read_text()

    bench = tmp_path / "bench"
    assert main(["benchmark", "--out", str(bench), "--methods", "decoder-only,vmt",
                 "--lr-from", str(out / "sweep.json"),
                 *sets, "--steps", "2", "--no-subprocess", "--no-progress"]) == 0
    rows = {r["method"]: r for r in json.loads((bench / "results.json").read_text())["rows"]}
    assert {m: rows[m]["lr"] for m in rows} == {m: v["lr"] for m, v in summary["selected"].items()}
    assert "selected it (column lr)" in (bench / "results.md").read_text()
    # A selection that lacks a method is refused before any training.
    assert main(["benchmark", "--out", str(tmp_path / "b2"), "--methods", "bitfit", "--lr-from",
                 str(out / "sweep.json"), *sets, "--no-subprocess", "--no-progress"]) == 2
