"""Multi-task score against published rows, results-file parsing, and ``vmt report``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vmt_adapter.cli import main
from vmt_adapter.engine.score import REFERENCES, load_results, multi_task_score, resolve_reference
from vmt_adapter.errors import ConfigError

MTLORA = {"semseg": 67.90, "human_parts": 59.84, "sal": 65.40, "normals": 16.60}
TADFORMER = {"semseg": 70.82, "human_parts": 60.45, "sal": 65.88, "normals": 16.48}


@pytest.mark.parametrize(("metrics", "low", "high"), [(MTLORA, 2.54, 2.55), (TADFORMER, 4.23, 4.24)])
def test_dm_matches_published_rows(metrics: dict[str, float], low: float, high: float) -> None:
    assert low <= multi_task_score(metrics, REFERENCES["pascal-swin-t"]) <= high


def test_dm_uses_only_common_tasks_and_needs_one() -> None:
    ref = REFERENCES["pascal-swin-t"]
    assert multi_task_score({"normals": 17.97 * 0.9, "depth": 0.5}, ref) == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="no task in common"):
        multi_task_score({"depth": 0.5}, ref)


def _write(path: Path, data: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_load_results_formats(tmp_path: Path) -> None:
    plain = load_results(_write(tmp_path / "mtlora.json", {"name": "MTLoRA", "metrics": MTLORA, "trainable": 8.34e6}))
    assert (plain["name"], plain["metrics"], plain["trainable"]) == ("MTLoRA", MTLORA, 8.34e6)
    run_eval = {"metrics": {"semseg": {"mIoU": 60.0}, "human_parts": None}, "params": {"trainable": 5}}
    run = load_results(_write(tmp_path / "run7" / "eval.json", run_eval))  # null: not measured, left out
    assert (run["name"], run["metrics"], run["trainable"]) == ("run7", {"semseg": 60.0}, 5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"name": "x"}', "missing key 'metrics'"),
        ('{"metrics": {"semseg": "high"}}', "key 'metrics.semseg' must be a finite number"),
        ('{"metrics": {"sky": 1.0}}', "key 'metrics.sky': unknown task"),
        ('{"metrics": {"normals": {"rmse": 20}}}', "missing key 'metrics.normals.mean'"),
        ('{"metrics": {"sal": 60}, "trainable": "many"}', "key 'trainable'"),
    ],
)
def test_load_results_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_results(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_resolve_reference(tmp_path: Path) -> None:
    assert resolve_reference("pascal-swin-t") == REFERENCES["pascal-swin-t"]
    assert resolve_reference(_write(tmp_path / "ref.json", {"metrics": MTLORA})) == MTLORA
    with pytest.raises(ConfigError, match="neither a built-in"):
        resolve_reference("no-such-reference")


def test_report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.json", {"name": "MTLoRA r=64", "metrics": MTLORA, "trainable": 8_340_000})
    b = _write(tmp_path / "b.json", {"name": "TADFormer r=64", "metrics": TADFORMER})
    assert main(["report", a, b, "--reference", "pascal-swin-t", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["MTLoRA r=64", "TADFormer r=64"]
    assert rows[0]["metrics"] == MTLORA and rows[0]["trainable"] == 8_340_000 and rows[1]["trainable"] is None
    assert 2.54 <= rows[0]["dm"] <= 2.55 and 4.23 <= rows[1]["dm"] <= 4.24
    assert main(["report", a, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["dm"] is None


def test_report_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.json", {"name": "MTLoRA", "metrics": MTLORA, "trainable": 8_340_000})
    assert main(["report", a, "--reference", "pascal-swin-t"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ("normals mean (deg) ↓" in lines[0] and "semseg mIoU (%) ↑" in lines[0]
            and "dm vs pascal-swin-t (%)" in lines[0])
    assert lines[2].split()[0] == "MTLoRA" and "+2.54" in lines[2] and "8.34" in lines[2]
    assert len({len(line) for line in lines}) == 1  # aligned
    assert main(["report", a, "--markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| name |") and md[1].startswith("|---|") and md[2].startswith("| MTLoRA | 67.90 |")


FOUR = {"semseg": 60.0, "human_parts": 55.0, "sal": 60.0, "normals": 18.0}


def test_dm_needs_the_reference_task_set_and_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    depth_only = _write(tmp_path / "depth.json", {"metrics": {"depth": 0.6}})
    two = _write(tmp_path / "two.json", {"name": "two", "metrics": {"semseg": 60.0, "sal": 60.0}})
    synth = _write(tmp_path / "synth.json", {"name": "synth-run", "dataset": "synth", "metrics": FOUR})
    pascal = _write(tmp_path / "pascal.json", {"name": "pascal-run", "dataset": "pascal", "metrics": FOUR})
    assert main(["report", depth_only, two, synth, pascal, "--reference", "pascal-swin-t", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["depth"]["dm"] is None and "lacks the reference's task(s) semseg" in rows["depth"]["note"]
    assert rows["two"]["dm"] is None and "human_parts, normals" in rows["two"]["note"]
    assert (rows["synth-run"]["dm"] is None
            and rows["synth-run"]["note"] == "no dm: measured on synth, the reference on pascal")
    # (60/67.21 + 55/61.93 + 60/62.35 - 3) / 4 + (17.97 - 18) / 17.97 / 4, in percent
    expected = 100 / 4 * ((60 - 67.21) / 67.21 + (55 - 61.93) / 61.93 + (60 - 62.35) / 62.35 - (18 - 17.97) / 17.97)
    assert rows["pascal-run"]["dm"] == pytest.approx(expected) and rows["pascal-run"]["note"] is None
    assert main(["report", two, "--reference", "pascal-swin-t"]) == 0
    assert "- two: no dm: it lacks the reference's task(s) human_parts, normals" in capsys.readouterr().out


@pytest.mark.parametrize("task, value", [("semseg", 140.0), ("sal", -1.0), ("normals", 200.0)])
def test_impossible_metrics_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str,
                                         value: float) -> None:
    bad = _write(tmp_path / "bad.json", {"metrics": FOUR | {task: value}})
    assert main(["report", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and f"'metrics.{task}' = {value} is impossible" in err


def test_a_run_folder_is_a_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "st-full"
    run.mkdir()
    _write(run / "eval.json", {"name": "st-full", "dataset": "synth", "metrics": FOUR})
    other = _write(tmp_path / "x.json", {"name": "x", "dataset": "synth", "metrics": FOUR | {"semseg": 66.0}})
    assert main(["report", other, "--reference", str(run), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["dm"] == pytest.approx(100 / 4 * (66.0 - 60.0) / 60.0)


def test_report_prior_row_comes_from_the_run_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vmt_adapter.engine.config import load_config, save_config
    from vmt_adapter.engine.prior import prior_result

    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(None, ["data.size=32", "data.num_val=3", "data.cache_dir=", "tasks=[semseg,normals]"])
    save_config(cfg, run / "config.yaml")
    _write(run / "eval.json", {"name": "run", "metrics": {"semseg": 20.0, "normals": 30.0}})
    assert main(["report", str(run / "eval.json"), "--prior", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["run", "prior"]
    assert rows[1]["metrics"] == pytest.approx(prior_result(cfg)["metrics"]) and rows[1]["trainable"] == 0


@pytest.mark.parametrize("text,why", [
    ('{"metrics": {"semseg": 1.0, "semseg": 2.0}}', "key 'semseg' appears twice in one object"),
    ('{"metrics": {"semseg": 1.0}, "trainable": -3}', "a parameter count cannot be negative, got trainable -3"),
    ('{"metrics": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply to be a results file"),
])
def test_results_files_that_would_be_misread_are_refused(text: str, why: str, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {why}")):
        load_results(path)
