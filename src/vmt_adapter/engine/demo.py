"""The main job on the embedded default: VMT-Adapter vs the decoder-only baseline on SynthScenes.

Both runs adapt the same pretrained, frozen ``swin_nano`` (``builtin:swin_nano_synth``) with the
same data, budget and seed; only the method differs. A finished run is not trained again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from ..commands.eval import load_run
from ..commands.report import build_rows, format_table
from ..data import build_dataset
from ..device import pick_device
from ..tasks import TASKS
from .config import load_config
from .predict import predict_files
from .train import train

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
RUNS = {"vmt": "synth-vmt.yaml", "decoder-only": "synth-decoder-only.yaml"}
NUM_IMAGES = 4


def _run(name: str, config: Path, out: Path, overrides: list[str], progress: bool) -> dict:
    run_dir = out / name
    if (run_dir / "eval.json").exists():
        print(f"[demo] {name}: already finished in {run_dir}, reusing it")
        return json.loads((run_dir / "eval.json").read_text())
    print(f"[demo] training {name} ({config.name})")
    resume = (run_dir / "last.pt").exists()
    trainer = train(load_config(config, overrides), run_dir, resume=resume, progress=progress)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return trainer.result


def _verdict(vmt: dict, base: dict) -> list[str]:
    lines = []
    for task, value in vmt["metrics"].items():
        spec, other = TASKS[task], base["metrics"][task]
        gain = (value - other) if spec.higher_is_better else (other - value)
        verdict = "tie" if abs(gain) < 0.005 else "VMT-Adapter better" if gain > 0 else "decoder-only better"
        lines.append(f"- {task}: VMT-Adapter {value:.2f} vs decoder-only {other:.2f} {spec.unit} ({verdict})")
    return lines


def run_demo(out: Path, config_dir: Path = CONFIG_DIR, overrides: list[str] | None = None,
             progress: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {name: _run(name, config_dir / cfg, out, overrides or [], progress) for name, cfg in RUNS.items()}
    # Prediction panels on a few validation images, saved as plain PNG files first (as a user would have them).
    cfg = load_config(config_dir / RUNS["vmt"], overrides)
    val = build_dataset("synth", "", "val", cfg.tasks, cfg.data.size, train=False, num=NUM_IMAGES)
    images = []
    for i in range(NUM_IMAGES):
        path = out / "images" / f"val_{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(val.raw(i)["image"]).save(path)
        images.append(path)
    _, model = load_run(out / "vmt", overrides or [])
    device = pick_device(cfg.device)
    panels = predict_files(model.to(device), images, out / "predictions", device)
    rows = build_rows([str(out / name / "eval.json") for name in RUNS], reference=None)
    table = format_table(rows, markdown=True)
    vmt, base = results["vmt"], results["decoder-only"]
    wall = time.perf_counter() - start
    report = "\n".join([
        "# vmt-adapter demo: SynthScenes, swin_nano (pretrained on SynthScenes' reserved range, frozen)",
        "",
        f"Same data, budget ({cfg.train.steps} steps x batch {cfg.train.batch_size}, {cfg.data.size} px) and seed "
        "for both methods; validation split, "
        f"{vmt['eval_resolution']}. Wall time of this invocation: {wall:.0f} s.",
        "",
        table,
        "",
        f"Trainable parameters: VMT-Adapter {vmt['params']['trainable']:,} "
        f"(adapter {vmt['params']['adapter']:,}, decoders {vmt['params']['decoders']:,}); "
        f"decoder-only {base['params']['trainable']:,}.",
        "",
        *_verdict(vmt, base),
        "",
        "Prediction panels (VMT-Adapter):",
        "",
        *[f"![{p.stem}](predictions/{p.name})" for p in panels],
        "",
    ])
    (out / "report.md").write_text(report)
    print(format_table(rows))
    print("\n".join(_verdict(vmt, base)))
    print(f"[demo] report: {out / 'report.md'}; panels: {panels[0].parent}; wall time {wall:.0f} s")
    return {"results": results, "panels": [str(p) for p in panels], "seconds": wall}
