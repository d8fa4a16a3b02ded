"""How often the training augmentation crops every human part out of a SynthScenes sample.

Usage: python tools/emptied_parts.py [--num 2000] [--epochs 6] [--seeds 0,1,2] [--cache runs/cache]
For each seed and epoch, every training scene that shows a part is warped with the geometry that seed and
epoch draw for it (as training does); a draw counts when no part pixel is left (what ``data.emptied`` decides).
"""

from __future__ import annotations

import argparse

from vmt_adapter.data.synth import SynthScenes
from vmt_adapter.data.transforms import JointTransform, apply_geometry, sample_rng


def has_part(labels) -> bool:
    return bool(((labels > 0) & (labels < 255)).any())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--cache", default="runs/cache")
    a = p.parse_args()
    data = SynthScenes("train", ["human_parts"], num=a.num, size=a.size, cache_dir=a.cache or None)
    raws = [data.raw(i) for i in range(len(data))]
    shown = [r for r in raws if has_part(r["human_parts"])]
    print(f"{len(shown)} of {len(raws)} training scenes show a part")
    for seed in (int(s) for s in a.seeds.split(",")):
        transform = JointTransform(train=True, size=a.size, seed=seed)
        emptied = 0
        for epoch in range(a.epochs):
            for r in shown:
                geometry = transform.draw(sample_rng(seed, epoch, r["id"]))
                out = apply_geometry({"image": r["image"], "human_parts": r["human_parts"]}, geometry, (a.size, a.size))
                emptied += not has_part(out["human_parts"])
        print(f"seed {seed}: {emptied} of {a.epochs * len(raws)} draws ({a.epochs} passes) lose every part")


if __name__ == "__main__":
    main()
