"""Typed dataclasses from plain mappings (YAML, JSON): one checker for run configs and method configs.

An unknown key or a value of the wrong type is a ``ConfigError`` that names the dotted key (with a
"did you mean" for near misses); numbers are converted gently (int -> float, list -> tuple).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError


def did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Check (and gently convert) a value against a field's type; ``X | None`` accepts None."""
    if get_origin(typ) in (Union, types.UnionType):
        options = [t for t in get_args(typ) if t is not type(None)]
        return None if value is None else coerce(value, options[0], key)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if typ is tuple and isinstance(value, list):
        return tuple(value)
    if typ is str and value is None:
        return ""
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"config key {key!r} must be {typ.__name__}, got {value!r}")
    return value


def build(cls: type, values: Any, prefix: str = "") -> Any:
    """``cls(**values)`` with every key and type checked; nested dataclass fields are built recursively."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'} must be a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key {prefix + str(key)!r}{did_you_mean(str(key), names)}")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = build(typ, value, prefix + key + ".")
        else:
            kwargs[key] = coerce(value, typ, prefix + key)
    return cls(**kwargs)
