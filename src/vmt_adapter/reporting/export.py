"""ONNX export of a trained multi-task model: one graph, one backbone pass, one output per task.

Why the dynamo exporter (``torch.onnx.export(dynamo=True)``, which needs ``onnxscript``): the
TorchScript exporter cannot export the decoders' shape-dependent channel norm. Swin pads its windows
and the ViT resamples its position embedding, so both graphs take any image size by default; the
batch is always dynamic. The input's dimensions are named ``batch``, ``height`` and ``width``.
onnx, onnxruntime and onnxscript come from the optional extra ``vmt-adapter[onnx]``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, VMTError
from ..fileio import atomic_write
from ..models.multitask import MultiTaskModel

EXTRA = ("onnx", "onnxruntime", "onnxscript")
OPSET = 18
TOLERANCE = 1e-4  # largest absolute difference per task accepted against PyTorch in fp32


class MissingExtraError(VMTError):
    """An optional dependency is not installed; the message says which extra to install."""


def require_extra() -> None:
    missing = [m for m in EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"ONNX export needs {', '.join(missing)}: pip install 'vmt-adapter[onnx]'")


class TaskOutputs(nn.Module):
    """The model (fp32, CPU, eval mode: what is exported and compared) with a tuple of outputs in task
    order, which ONNX names after the tasks."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model.float().cpu().eval()
        self.eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        return tuple(out[name] for name in self.model.task_names)


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter cannot write: asked for less than it supports, it quietly writes another."""
    require_extra()
    import onnx

    if not OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ConfigError(f"--opset {opset}: PyTorch's ONNX exporter writes opsets {OPSET} to "
                          f"{onnx.defs.onnx_opset_version()} (the installed onnx's newest)")


def export_onnx(model: MultiTaskModel, out: str | Path, size: int, dynamic_size: bool = True,
                opset: int = OPSET) -> dict:
    """Write ``model`` (fp32, CPU, eval mode) to ``out``; returns what was written."""
    check_opset(opset)
    import onnx
    wrapped = TaskOutputs(model)
    # Named, so that the graph's input reads (batch, 3, height, width) rather than exporter symbols.
    dim = torch.export.Dim
    dims = {0: dim("batch", min=1, max=4096)} | ({2: dim("height", min=1), 3: dim("width", min=1)}
                                                 if dynamic_size else {})
    example = torch.zeros(2, 3, size, size)
    start = time.perf_counter()

    def write(tmp: str) -> None:
        program = torch.onnx.export(wrapped, (example,), None, input_names=["image"], output_names=model.task_names,
                                    dynamic_shapes=(dims,), opset_version=opset, dynamo=True, verbose=False)
        program.save(tmp)

    atomic_write(Path(out), write)
    written = {o.domain: o.version for o in onnx.load(str(out), load_external_data=False).opset_import}
    return {"path": str(out), "opset": written.get("", opset),
            "bytes": Path(out).stat().st_size, "dynamic_size": dynamic_size,
            "size": size, "tasks": list(model.task_names), "export_s": time.perf_counter() - start}


def _session(path: str | Path):
    require_extra()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as PyTorch's
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(path: str | Path, model: MultiTaskModel, images: torch.Tensor) -> dict[str, float]:
    """Largest absolute difference per task between onnxruntime (CPU) and PyTorch on ``images``."""
    got = _session(path).run(None, {"image": images.numpy()})
    with torch.no_grad():
        ref = TaskOutputs(model)(images)
    return {name: float(np.abs(g - r.numpy()).max()) for name, g, r in zip(model.task_names, got, ref)}


def latency(path: str | Path, model: MultiTaskModel, image: torch.Tensor, repeats: int = 30,
            warmup: int = 5) -> dict[str, float]:
    """Median ms per call on one image (batch 1), onnxruntime against PyTorch eager, same CPU threads."""
    session, feed = _session(path), {"image": image[:1].numpy()}
    eager = TaskOutputs(model)

    def onnx_call() -> None:
        session.run(None, feed)

    def torch_call() -> None:
        with torch.no_grad():
            eager(image[:1])

    times: dict[str, list[float]] = {"onnxruntime_ms": [], "pytorch_ms": []}
    for _ in range(warmup):
        onnx_call()
        torch_call()
    for _ in range(repeats):  # interleaved, so that machine load hits both alike
        for key, call in (("onnxruntime_ms", onnx_call), ("pytorch_ms", torch_call)):
            start = time.perf_counter()
            call()
            times[key].append(1000 * (time.perf_counter() - start))
    return {k: float(np.median(v)) for k, v in times.items()} | {"threads": torch.get_num_threads(),
                                                                 "repeats": repeats}
