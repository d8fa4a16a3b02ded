"""Time one GELU over a stacked MTLoRA tap-block hidden layer against the same elements as separate tensors.

Why the last block of each stage maps its 1 + T streams one by one: stacked, at 448 px the MLP's hidden layer
of stage 1 would be (5, 12544, 384) float32, 96 MB, past glibc's largest mmap threshold (32 MiB on 64-bit), so every
such allocation gets fresh pages from the kernel and pays a minor page fault per 4 KiB page on first touch.
Prints the median time per call and the minor page faults per call of each form (one thread).

    OMP_NUM_THREADS=1 .venv/bin/python tools/stacked_allocation.py
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def measure(fn: Callable[[], object], repeats: int = 10) -> tuple[float, float]:
    """Median ms per call and minor page faults per call."""
    fn()
    times, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats
    return statistics.median(times) * 1000, faults


def main() -> None:
    torch.set_num_threads(1)
    stacked = torch.randn(5, 12544, 384)
    parts = [t.clone() for t in stacked.unbind(0)]
    for name, fn in (("stacked (5, 12544, 384)", lambda: F.gelu(stacked)),
                     ("5 x (12544, 384)", lambda: [F.gelu(p) for p in parts])):
        ms, faults = measure(fn)
        print(f"{name:24s} {ms:7.1f} ms  {faults:9,.0f} minor page faults per call")


if __name__ == "__main__":
    main()
