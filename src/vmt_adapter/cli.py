"""The ``vmt`` command. Each sub-command lives in ``vmt_adapter.commands.<name>`` and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import VMTError

# Sub-command modules, in the order ``vmt --help`` lists them. Each defines ``register(subparsers)``.
COMMANDS = ["params", "train", "eval", "predict", "report", "pretrain", "demo", "data", "bench", "benchmark", "sweep", "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmt", description="Parameter-efficient multi-task dense prediction.")
    parser.add_argument("--version", action="version", version=f"vmt-adapter {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vmt_adapter.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (VMTError, OSError) as exc:  # OSError: unreadable input or unwritable --out (its message names the path)
        if args.debug:
            raise
        print(f"vmt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vmt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
