"""The repository's analysis scripts under tools/, on hand-made inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_gaps_pairs_by_seed_and_reports_mean_std():
    gaps = _load("paired_gaps")
    results = {"per_seed": {
        "1": [{"method": "a", "metrics": {"semseg": 30.0, "normals": 20.0}},
              {"method": "b", "metrics": {"semseg": 27.0, "normals": 21.5}}],
        "0": [{"method": "a", "metrics": {"semseg": 31.0, "normals": 19.0}},
              {"method": "b", "metrics": {"semseg": 30.0, "normals": 20.0}}],
    }}
    tasks, rows = gaps.paired(results, "a", "b")
    assert tasks == ["semseg", "normals"]
    # seeds in numeric order; a - b by hand
    assert rows == [("0", [1.0, -1.0]), ("1", [3.0, -1.5])]
    table = gaps.markdown(tasks, rows)
    # semseg gaps 1 and 3: mean 2, sample std sqrt(2) = 1.41; normals -1, -1.5: mean -1.25, std 0.35
    assert "| mean ± std | +2.00 ± 1.41 | -1.25 ± 0.35 |" in table
    assert "normals ↓" in table


def test_paired_gaps_across_two_results_files_pairs_by_seed():
    """A setting's run against the default run of the same method: seeds present in both only."""
    gaps = _load("paired_gaps")
    variant = {"per_seed": {"0": [{"method": "vmt", "metrics": {"sal": 40.0}}],
                            "2": [{"method": "vmt", "metrics": {"sal": 41.0}}]}}
    default = {"per_seed": {"0": [{"method": "vmt", "metrics": {"sal": 42.5}}],
                            "1": [{"method": "vmt", "metrics": {"sal": 1.0}}]}}
    assert gaps.paired(variant, "vmt", "vmt", default) == (["sal"], [("0", [-2.5])])


def test_paired_gaps_skips_a_seed_where_a_method_failed(tmp_path):
    gaps = _load("paired_gaps")
    results = {"per_seed": {"0": [{"method": "a", "metrics": {}}, {"method": "b", "metrics": {"sal": 1.0}}]}}
    assert gaps.paired(results, "a", "b") == ([], [])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="no seed has results"):
        gaps.main(path, "a", "b")


def test_stacked_allocation_measures_each_call():
    """One warm-up call then ``repeats`` timed ones; time and faults are per call."""
    tool = _load("stacked_allocation")
    calls = []
    ms, faults = tool.measure(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5 and ms >= 0 and faults >= 0
