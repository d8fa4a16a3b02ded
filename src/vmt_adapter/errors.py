"""Errors a user can act on. The CLI prints them as one line and exits non-zero (``--debug`` shows the traceback)."""

import re

# What torch's CPU and CUDA allocators say when a request cannot be met (torch.OutOfMemoryError is a RuntimeError).
_OOM = re.compile(r"can't allocate memory|not enough memory|out of memory", re.IGNORECASE)
_BYTES = re.compile(r"tried to allocate (\d+) bytes", re.IGNORECASE)
_CUDA_SIZE = re.compile(r"tried to allocate ([\d.]+ [KMGT]iB)", re.IGNORECASE)


class VMTError(Exception):
    """Base class: the message names the file, key or value at fault and what was expected."""


class ConfigError(VMTError, ValueError):
    """A bad configuration key or value, or a bad command-line argument."""


class DataError(VMTError):
    """A missing, partial or malformed dataset file."""


class WeightsError(VMTError):
    """Backbone weights or adapter files that cannot be used with the requested model."""


class CheckpointError(VMTError):
    """A training checkpoint that is missing, corrupt or from another run."""


class WriteError(VMTError, OSError):
    """A run file that could not be written (disk full, no permission); the earlier version is kept."""


def out_of_memory(exc: BaseException) -> str | None:
    """One line for an allocation that failed (sizes within the allowed ranges can still exceed a machine's
    memory), or None when ``exc`` is something else."""
    text = str(exc)
    if not isinstance(exc, MemoryError) and not (isinstance(exc, RuntimeError) and _OOM.search(text)):
        return None
    size, cuda = _BYTES.search(text), _CUDA_SIZE.search(text)
    asked = f"{int(size.group(1)) / 2**30:,.1f} GiB" if size else cuda.group(1) if cuda else "more than is free"
    return (f"out of memory (an allocation of {asked} failed): lower the batch size, data.size or --size, or "
            "model.decoder_ratio; on a GPU, train.grad_checkpointing saves activation memory")
