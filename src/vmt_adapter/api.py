"""The Python API, peft-style: load a trained adapter, prepare images, predict, count parameters.

``import vmt_adapter`` stays cheap (no torch); these names are imported on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from .models.io import model_from_adapter
from .models.multitask import MultiTaskModel
from .reporting.predict import predict, preprocess

__all__ = ["from_pretrained", "predict", "preprocess", "print_trainable_parameters"]


def from_pretrained(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None,
                    allow_other_base: bool = False) -> MultiTaskModel:
    """The model of a run or adapter folder (``adapter.json`` + ``adapter.safetensors``), in eval mode.

    ``base`` names the backbone weights to build on (a path or ``builtin:NAME``); by default the ones
    ``adapter.json`` records. Weights whose SHA-256 differs from the recorded one are refused unless
    ``allow_other_base=True``: the adapter was trained for that backbone only. Eval mode, because a model
    called in train mode moves its BatchNorm statistics and its outputs.
    """
    return model_from_adapter(Path(path), pretrained=base, allow_other_base=allow_other_base).eval()


def print_trainable_parameters(model: MultiTaskModel) -> None:
    """peft's summary line, then where the trainable parameters are (scopes of ``vmt params``)."""
    counts = model.parameter_counts()
    total = counts["trainable"] + counts["frozen"]
    print(f"trainable params: {counts['trainable']:,} || all params: {total:,} || "
          f"trainable%: {100 * counts['trainable'] / total:.4f}")
    print(f"of which adapter: {counts['adapter']:,} ({counts['adapter_task_specific']:,} task-specific) || "
          f"decoders: {counts['decoders']:,} || other: {counts['other_trainable']:,}")
