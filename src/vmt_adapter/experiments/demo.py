"""The main job on the embedded default: VMT-Adapter vs the decoder-only baseline on SynthScenes.

Both runs adapt the same pretrained, frozen ``swin_nano`` (``builtin:swin_nano_studio``) with the
same data, budget and seed; only the method differs. A finished run is not trained again. The
report puts the ``prior`` row (best constant prediction, ``engine.prior``) under both, and the
panels show, per validation image, the ground truth and both methods' predictions in one
colour scale per task.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..data import build_dataset
from ..data.visualize import save_panel
from ..device import pick_device
from ..engine.config import CONFIG_DIR, load_config
from ..engine.prior import prior_result
from ..engine.runs import load_run
from ..errors import VMTError
from ..fileio import atomic_write
from ..kinds import kind_of
from ..reporting.report import format_table, rows_of_results
from ..tasks import TASKS
from .processes import RECORD, train_runs

RUNS = {"vmt": "synth-vmt.yaml", "decoder-only": "synth-decoder-only.yaml"}
LABELS = {"vmt": "VMT-Adapter", "decoder-only": "decoder-only"}
NUM_IMAGES = 4


def _verdict(vmt: dict, base: dict) -> list[str]:
    lines = []
    for task, value in vmt["metrics"].items():
        spec, other = TASKS[task], base["metrics"][task]
        gain = (value - other) if spec.higher_is_better else (other - value)
        verdict = "tie" if abs(gain) < 0.005 else "VMT-Adapter better" if gain > 0 else "decoder-only better"
        lines.append(f"- {task}: VMT-Adapter {value:.2f} vs decoder-only {other:.2f} {spec.unit} ({verdict})")
    return lines


PANEL_SIDE = 192  # tiles are enlarged (nearest neighbour) to about this many pixels, so that labels stay legible


@torch.no_grad()
def comparison_panels(models: dict[str, torch.nn.Module], dataset, out_dir: Path, num: int,
                      device: torch.device) -> list[Path]:
    """Per image: rows ground truth / each model, columns image then every task, one scale per task."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = next(iter(models.values())).tasks
    panels = []
    for i in range(num):
        item = dataset[i]
        image = dataset.raw(i)["image"]
        block = np.ones((max(1, PANEL_SIDE // image.shape[0]),) * 2 + (1,), np.uint8)
        big = lambda rgb, block=block: np.kron(np.asarray(rgb, np.uint8), block)  # noqa: E731
        tiles = [("ground truth", big(image))]
        tiles += [(f"truth {t.name}", big(kind_of(t).truth_picture(item[t.name]))) for t in tasks]
        for name, model in models.items():
            outputs = model.eval()(item["image"].unsqueeze(0).to(device))
            tiles.append((name, big(image)))
            tiles += [(f"{name} {t.name}", big(kind_of(t).draw(outputs[t.name][0].float().cpu()))) for t in tasks]
        path = out_dir / f"val_{i}_compare.png"
        save_panel(tiles, path, columns=1 + len(tasks))
        panels.append(path)
    return panels


def run_demo(out: Path, config_dir: Path = CONFIG_DIR, overrides: list[str] | None = None,
             progress: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    overrides = overrides or []
    start = time.perf_counter()
    configs = {name: load_config(config_dir / cfg, overrides) for name, cfg in RUNS.items()}
    # Both trainings at once, one process each, when there are cores for both (each gets its share).
    train_runs([(c, out / name, f"[demo] {name}") for name, c in configs.items()], isolated=True,
               progress=progress, jobs=min(len(RUNS), os.cpu_count() or 1))
    missing = [name for name in RUNS if not (out / name / "eval.json").exists()]
    if missing:
        raise VMTError(f"demo: {', '.join(missing)} did not finish; see {out / missing[0] / RECORD}")
    results = {name: json.loads((out / name / "eval.json").read_text()) for name in RUNS}
    cfg = load_config(config_dir / RUNS["vmt"], overrides)
    prior = prior_result(cfg)
    device = pick_device(cfg.device)
    models = {LABELS[name]: load_run(out / name, [])[1].to(device) for name in RUNS}
    val = build_dataset("synth", "", cfg.eval.split, cfg.tasks, cfg.data.size, train=False,
                        num=NUM_IMAGES, cache_dir=cfg.data.cache_dir)
    panels = comparison_panels(models, val, out / "predictions", NUM_IMAGES, device)
    # No single-task reference is trained in the demo, so dm is not defined here (None).
    rows = rows_of_results([results["vmt"], results["decoder-only"], prior], reference=None)
    for row, name in zip(rows, ("vmt", "decoder-only", "prior")):
        row["name"] = name
    table = format_table(rows, markdown=True)
    vmt, base = results["vmt"], results["decoder-only"]
    wall = time.perf_counter() - start
    report = "\n".join([
        "# vmt-adapter demo: SynthScenes, swin_nano (pretrained on SynthStudio with image-level objectives, frozen)",
        "",
        f"Same data, budget ({cfg.train.steps} steps x batch {cfg.train.batch_size}, {cfg.data.size} px) and seed "
        f"({cfg.seed}) for both methods; dataset {vmt.get('dataset_version')}, {cfg.eval.split} split "
        f"({cfg.data.num_val} scenes), {vmt['eval_resolution']}. `prior` is the best constant prediction "
        "(majority label, positive frequency and mean normal per pixel position of the split). "
        f"Wall time of this invocation: {wall:.0f} s.",
        "",
        table,
        "",
        f"Trainable parameters: VMT-Adapter {vmt['params']['trainable']:,} "
        f"(adapter {vmt['params']['adapter']:,}, decoders {vmt['params']['decoders']:,}); "
        f"decoder-only {base['params']['trainable']:,}.",
        "",
        *_verdict(vmt, base),
        "",
        "Panels (rows: ground truth, VMT-Adapter, decoder-only; saliency as probability in grey, 0 black to 1 white):",
        "",
        *[f"![{p.stem}](predictions/{p.name})" for p in panels],
        "",
    ])
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(report))
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=2)))
    print(format_table(rows))
    print("\n".join(_verdict(vmt, base)))
    print(f"[demo] report: {out / 'report.md'} and report.json; panels: {panels[0].parent}; wall time {wall:.0f} s")
    return {"results": results, "rows": rows, "panels": [str(p) for p in panels], "seconds": wall}

