"""Atomic file writes, shared by adapter files and training checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from .errors import ConfigError, WriteError


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, fsync, then rename: a crash never leaves half a file."""
    # Not mkstemp: its 0600 mode would survive the rename and hide the file from other users (umask applies here).
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
    try:
        try:
            write(tmp)
        except (OSError, SafetensorError) as exc:  # ENOSPC and friends often name only the temporary file, or nothing
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
            raise WriteError(f"cannot write {path}: {why} (the previous version, if any, is kept)") from exc
        os.chmod(tmp, 0o666 & ~_umask())  # some writers (safetensors) create 0600 files; follow the umask
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (backbone weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """An OS error while writing ``what`` as one WriteError naming it (ENOSPC often names no file at all)."""
    try:
        yield
    except OSError as exc:
        raise WriteError(f"cannot write {what}: {exc.strerror or exc}") from exc


def read_json(path: Path, what: str) -> Any:
    """A JSON file's value; anything that would be misread is one ConfigError naming the file: missing,
    unreadable, not JSON, nested past the recursion limit (``what`` it should have been), or an object
    with a repeated key (json would keep the last one silently)."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) < len(pairs):
            repeated = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
            raise ConfigError(f"{path}: key {repeated!r} appears twice in one object")
        return out

    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None

