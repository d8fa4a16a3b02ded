"""Predictions on image files: per-task PNGs (palettes, colour-coded normals, heat maps) and a panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from ..data.transforms import build_transform
from ..data.visualize import IGNORE_COLOUR, render, save_panel
from ..errors import DataError
from ..models.multitask import MultiTaskModel
from ..tasks import IGNORE_INDEX

_HEAT = colormaps["inferno"]


def _heat(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (probabilities) or any range (depth, rescaled) -> RGB heat map."""
    lo, hi = (0.0, 1.0) if x.min() >= 0 and x.max() <= 1 else (float(x.min()), float(x.max()))
    return (_HEAT((x - lo) / max(hi - lo, 1e-6))[..., :3] * 255).round().astype(np.uint8)


def _grey(p: np.ndarray) -> np.ndarray:
    """Probabilities (or {0, 1} labels) in [0, 1] -> grey levels, black 0 to white 1."""
    return np.repeat((p.clip(0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def _grey_truth(t: torch.Tensor) -> np.ndarray:
    """Binary label map -> the same grey scale as ``_grey``, ignore (255) in the ignore colour."""
    t = t.numpy()
    rgb = _grey((t == 1).astype(np.float64))
    rgb[t == IGNORE_INDEX] = IGNORE_COLOUR
    return rgb


# Model output (C, H, W) -> an RGB picture, by task kind; GROUND_TRUTH draws a target tensor in
# the same colour scale, so that a truth tile and a prediction tile can be compared directly.
PICTURES = {
    "classes": lambda o: render("semseg", o.argmax(0).numpy().astype(np.uint8)),
    "binary": lambda o: _grey(torch.sigmoid(o[0]).numpy()),
    "edge": lambda o: _grey(torch.sigmoid(o[0]).numpy()),
    "normals": lambda o: render("normals", torch.nn.functional.normalize(o, dim=0).permute(1, 2, 0).numpy()),
    "depth": lambda o: _heat(o[0].clamp(min=0).numpy()),
}
GROUND_TRUTH = {
    "classes": lambda t: render("semseg", t.numpy()),
    "binary": _grey_truth,
    "edge": _grey_truth,
    "normals": lambda t: render("normals", t.permute(1, 2, 0).numpy()),
    "depth": lambda t: _heat(t[0].numpy()),
}


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale, palette and RGBA images are converted, not refused."""
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: convert("RGB") would clip at 255
                grey = np.asarray(im).astype(np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or grey.max() > 255 else 255.0
                grey = np.round(grey.clip(0, top) / top * 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=-1)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError... for bad files
        raise DataError(f"cannot read image {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def output_stems(images: list[Path]) -> list[str]:
    """File stems for the outputs; inputs that share a stem (a/x.png, b/x.jpg) get ``x``, ``x-2``, ..."""
    seen: dict[str, int] = {}
    stems = []
    for path in images:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


@torch.no_grad()
def predict_files(model: MultiTaskModel, images: list[Path], out_dir: Path, device: torch.device) -> list[Path]:
    """Write ``<stem>_<task>.png`` for every task and ``<stem>_panel.png`` per image; return the panels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    transform = build_transform(train=False, size=model.img_size)
    model.eval()
    panels = []
    for path, stem in zip(images, output_stems(images)):
        rgb = load_image(Path(path))
        x = transform({"image": rgb, "id": stem})["image"].unsqueeze(0).to(device)
        outputs = model(x)
        shown = {"image": np.asarray(Image.fromarray(rgb).resize((model.img_size, model.img_size)))}
        for spec in model.tasks:
            picture = PICTURES[spec.kind](outputs[spec.name][0].float().cpu())
            Image.fromarray(picture).save(out_dir / f"{stem}_{spec.name}.png")
            shown[spec.name] = picture
        panel = out_dir / f"{stem}_panel.png"
        save_panel(shown, panel, columns=len(shown), rendered=True)
        panels.append(panel)
    return panels
