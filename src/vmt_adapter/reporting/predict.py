"""Predictions on images: the per-task arrays of ``vmt_adapter.predict`` (at the image's resolution),
their pictures (palettes, colour-coded normals, heat maps), label-index PNGs and a panel with a legend
per image (``vmt predict``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ..data.transforms import Geometry, apply_geometry
from ..errors import ConfigError, DataError
from ..fileio import writing
from ..kinds import TaskKind, kind_of
from ..models.multitask import MultiTaskModel

ImageInput = str | os.PathLike | Image.Image | np.ndarray
Size = int | tuple[int, int]

def _rgb(im: Image.Image) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a PIL image; grayscale, 16-bit, float, palette and RGBA images are converted
    (a float image is read on the scale its values fit: [0, 1], [0, 255] or [0, 65535])."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: convert("RGB") would clip at 255
        grey = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or grey.max() > 255 else 255.0
        grey = np.round(grey.clip(0, top) / top * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if im.mode == "F":  # 32-bit float: convert("RGB") truncates, so a [0, 1] image would come out black
        grey = np.asarray(im, dtype=np.float64)
        if not np.isfinite(grey).all():
            raise DataError("a floating-point image with NaN or infinite pixels cannot be read as RGB")
        top = 1.0 if grey.max() <= 1.0 else 255.0 if grey.max() <= 255.0 else 65535.0
        grey = np.round(grey.clip(0, top) / top * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file, any mode PIL reads."""
    try:
        with Image.open(path) as im:
            return _rgb(im)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError... for bad files
        raise DataError(f"cannot read image {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def as_rgb(image: ImageInput) -> np.ndarray:
    """A path, PIL image or uint8 (H, W, 3) array as an RGB uint8 array."""
    if isinstance(image, Image.Image):
        return _rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return image
    return load_image(image)


def _hw(size: Size) -> tuple[int, int]:
    """``size`` (a side, or (height, width)) as a checked (height, width)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise ConfigError(f"size must be a positive int or (height, width), got {size!r}")
    return hw


def preprocess(image: ImageInput, size: Size | None = None) -> torch.Tensor:
    """``image`` as the network's input: float32 (1, 3, H, W), ImageNet mean / std normalised.

    ``size`` (a side, or (height, width)) resizes bilinearly as evaluation does; None keeps the resolution.
    """
    rgb = as_rgb(image)
    out_hw = rgb.shape[:2] if size is None else _hw(size)
    return apply_geometry({"image": rgb}, Geometry(), out_hw)["image"][None]


@torch.no_grad()
def predict(model: MultiTaskModel, image: ImageInput, size: Size | None = None) -> dict[str, np.ndarray]:
    """Every task's prediction for one image, at the image's resolution (or ``size``).

    The network sees the image resized to its training size (as in training and evaluation); its
    outputs are resized bilinearly before decoding. By task kind: class ids int64 (H, W), probabilities
    float32 (H, W), unit normals float32 (H, W, 3), depth float32 (H, W). Runs in eval mode whatever
    mode the model is in, and leaves that mode as it was.
    """
    rgb = as_rgb(image)
    out_hw = rgb.shape[:2] if size is None else _hw(size)
    was_training = model.training
    model.eval()
    try:
        outputs = model(preprocess(rgb, model.img_size).to(next(model.parameters()).device))
    finally:
        model.train(was_training)
    return {spec.name: kind_of(spec).decode(F.interpolate(outputs[spec.name].float(), size=out_hw, mode="bilinear",
                                                       align_corners=False)[0].cpu())
            for spec in model.tasks}


def output_stems(images: list[Path]) -> list[str]:
    """File stems for the outputs; inputs that share a stem (a/x.png, b/x.jpg) get ``x``, ``x-2``, ..."""
    seen: dict[str, int] = {}
    stems = []
    for path in images:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


TILE_HEIGHT = 256  # panel tiles are scaled to this height (aspect kept), so small inputs stay legible
LEGEND_ROWS = 8  # classes listed under a label tile (the most frequent ones), then "+N more"
_FONT_SIZE, _LINE = 15, 20


def _legend(kind: TaskKind, array: np.ndarray, names: list[str] | None) -> list[tuple[tuple[int, ...] | None, str]]:
    """(swatch colour or None, text) lines under a tile: the classes present, most frequent first."""
    if not kind.class_ids:
        return [(None, kind.caption)]
    ids, counts = np.unique(array, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    colours = kind.picture(order[None])[0]
    lines = [(tuple(int(c) for c in colours[i]), f"{k} {names[k]}" if names else str(k))
             for i, k in enumerate(order[:LEGEND_ROWS])]
    return lines + ([(None, f"+{len(order) - LEGEND_ROWS} more")] if len(order) > LEGEND_ROWS else [])


def save_prediction_panel(tiles: list[tuple[str, np.ndarray, list]], path: Path) -> None:
    """One column per tile: title, the picture scaled to ``TILE_HEIGHT``, then its legend lines."""
    font = ImageFont.load_default(size=_FONT_SIZE)
    scaled = []
    for title, rgb, legend in tiles:
        h, w = rgb.shape[:2]
        resample = Image.Resampling.BILINEAR if title == "image" else Image.Resampling.NEAREST
        picture = Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).resize(
            (max(1, round(w * TILE_HEIGHT / h)), TILE_HEIGHT), resample)
        width = max([picture.width] + [_LINE + round(font.getlength(text)) for _, text in legend + [(None, title)]])
        scaled.append((title, picture, legend, width + 8))
    lines = max(len(legend) for _, _, legend, _ in scaled)
    canvas = Image.new("RGB", (sum(s[3] for s in scaled), _LINE + TILE_HEIGHT + 4 + lines * _LINE), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, picture, legend, width in scaled:
        draw.text((x + 2, 1), title, fill=(0, 0, 0), font=font)
        canvas.paste(picture, (x, _LINE))
        for i, (colour, text) in enumerate(legend):
            y = _LINE + TILE_HEIGHT + 4 + i * _LINE
            if colour is not None:
                draw.rectangle((x + 2, y + 2, x + _LINE - 4, y + _LINE - 4), fill=colour, outline=(0, 0, 0))
            draw.text((x + (_LINE if colour is not None else 2), y), text, fill=(0, 0, 0), font=font)
        x += width
    canvas.save(path)


def predict_files(model: MultiTaskModel, images: list[Path], out_dir: Path, size: Size | None = None,
                  class_names: dict[str, list[str]] | None = None) -> list[Path]:
    """Per image: ``<stem>_<task>.png`` (colour) for every task, ``<stem>_<task>_labels.png`` (the class
    ids as grey levels) for label maps, and ``<stem>_panel.png`` with a legend; returns the panels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = []
    for path, stem in zip(images, output_stems(images)):
        rgb = load_image(path)
        arrays = predict(model, rgb, size)
        h, w = next(iter(arrays.values())).shape[:2]
        tiles = [("image", np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR)), [])]
        panel = out_dir / f"{stem}_panel.png"
        with writing(f"the predictions of {path} in {out_dir}"):
            for spec in model.tasks:
                picture = kind_of(spec).picture(arrays[spec.name])
                Image.fromarray(picture).save(out_dir / f"{stem}_{spec.name}.png")
                if kind_of(spec).class_ids:  # 8-bit grey (mode L), 16-bit beyond 256 classes
                    ids = arrays[spec.name].astype(np.uint8 if spec.channels <= 256 else np.uint16)
                    Image.fromarray(ids).save(out_dir / f"{stem}_{spec.name}_labels.png")
                legend = _legend(kind_of(spec), arrays[spec.name], (class_names or {}).get(spec.name))
                tiles.append((spec.name, picture, legend))
            save_prediction_panel(tiles, panel)
        panels.append(panel)
    return panels
