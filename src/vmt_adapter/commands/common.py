"""Options several sub-commands share: ``--set KEY=VALUE`` overrides and the ``--steps`` shorthand."""

from __future__ import annotations

import argparse


def add_overrides(p: argparse.ArgumentParser, what: str = "override any config key (repeatable)",
                  steps: bool = False) -> None:
    """``--set KEY=VALUE`` (repeatable), and with ``steps`` the shorthand ``--steps N``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=what)
    if steps:
        p.add_argument("--steps", type=int, help="shorthand for --set train.steps=N")


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The ``--set`` items, then ``train.steps=N`` for ``--steps N``."""
    steps = getattr(args, "steps", None)
    return list(args.overrides) + ([f"train.steps={steps}"] if steps is not None else [])
