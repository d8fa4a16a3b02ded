"""Every device decision in one place, so the CPU path runs the same code as the GPU path."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")  # what train.precision and vmt bench --precision accept (see autocast)


def load_average() -> float | None:
    """The 1-minute load average: other processes skew CPU timings, so runs and bench rows record it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; an explicit name is honoured or refused."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {requested!r} is not a device name (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """Mixed precision context: ``bf16`` / ``fp16`` autocast on the device, or a no-op for ``fp32``."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in dtypes:
        raise ValueError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def timer(device: torch.device) -> Iterator[list[float]]:
    """Wall time in milliseconds of the block, with CUDA events on a GPU; read ``out[0]`` after."""
    out: list[float] = []
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield out
        end.record()
        torch.cuda.synchronize(device)
        out.append(start.elapsed_time(end))
    else:
        t0 = time.perf_counter()
        yield out
        out.append((time.perf_counter() - t0) * 1000.0)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak allocated memory on CUDA; ``None`` on CPU (``step_peak_memory_mb`` measures CPU steps)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def step_peak_memory_mb(device: torch.device, fn: Callable[[], object]) -> float:
    """Peak tensor memory allocated while ``fn`` runs, above what was allocated before it.

    CUDA reads the caching allocator's peak counter. CPU has no such counter, so the allocation
    and free events that the profiler records (``profile_memory``) are replayed in time order and
    their running sum's maximum is taken: the same quantity, tensor bytes only (no allocator cache,
    no fragmentation, no memory that libraries allocate outside PyTorch).
    """
    if device.type == "cuda":
        synchronize(device)
        base = torch.cuda.memory_allocated(device) / 2**20
        reset_peak_memory(device)
        fn()
        synchronize(device)
        return peak_memory_mb(device) - base
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # else the profiler prints start/stop lines on stderr
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:
            current += e.nbytes()
            peak = max(peak, current)
    return peak / 2**20


@contextlib.contextmanager
def rng_preserved(device: torch.device) -> Iterator[None]:
    """Run a block without moving the random streams training draws from (``rng_state``'s): creating a
    DataLoader iterator alone draws from torch's, so an evaluation between two training steps would
    otherwise change every dropout / drop-path mask after it."""
    state = rng_state(device)
    try:
        yield
    finally:
        set_rng_state(state, device)


@contextlib.contextmanager
def drawn_from(seed: int | None) -> Iterator[None]:
    """Run a block on torch's CPU generator seeded with ``seed`` (if not None), leaving the caller's
    stream as it was: a random backbone is rebuilt by drawing it again from the seed it came from."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def rng_state(device: torch.device) -> dict:
    """Every random stream training draws from (drop-path, dropout, ...), as tensors and numbers that a
    ``weights_only`` checkpoint can hold: resuming from it draws what the uninterrupted run would have."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, next_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                        gauss], "python": [version, list(words), next_gauss]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what ``rng_state`` captured (the CUDA stream only where both sides have one)."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, words, next_gauss = state["python"]
    random.setstate((version, tuple(words), next_gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
