"""Errors a user can act on. The CLI prints them as one line and exits non-zero (``--debug`` shows the traceback)."""


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
