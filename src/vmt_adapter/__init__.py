"""VMT-Adapter: once-for-all multi-task adapters on frozen Swin Transformers.

The API (``from_pretrained``, ``preprocess``, ``predict``, ``print_trainable_parameters``) lives in
``vmt_adapter.api`` and is imported on first use, so that ``import vmt_adapter`` (and ``vmt --help``)
does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "from_pretrained", "predict", "preprocess", "print_trainable_parameters"]

if TYPE_CHECKING:
    from .api import from_pretrained, predict, preprocess, print_trainable_parameters


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only (``dir(vmt_adapter)`` is how people discover an API)."""
    return sorted(__all__)
