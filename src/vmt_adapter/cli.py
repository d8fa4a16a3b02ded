"""The ``vmt`` command. Each sub-command lives in ``vmt_adapter.commands.<name>`` and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import VMTError, out_of_memory

# Sub-commands in the order ``vmt --help`` lists them, with the line it shows there. Each module defines
# ``register(subparsers)``; only the one named on the command line is imported (they load torch), so
# that ``vmt --help`` and ``vmt --version`` answer at once. The lines match each module's own help (tested).
COMMANDS = {
    "params": "count adapter, decoder, trainable and frozen parameters",
    "train": "train adapters and decoders from a config",
    "eval": "evaluate a trained run, write RUN_DIR/eval-SPLIT[-fullres].json",
    "predict": "predict every task on image files",
    "report": "tabulate results files and their multi-task score",
    "pretrain": "pretrain a small backbone for the embedded benchmark (SynthStudio: masked image modelling + "
                "image classification)",
    "demo": "train VMT-Adapter and the decoder-only baseline on SynthScenes, compare",
    "data": "dataset utilities",
    "bench": "measure forward / forward+backward time and peak memory against T",
    "benchmark": "train every method under one budget and seed, write a results table",
    "sweep": "choose each method's learning rate on a held-out part of train",
    "export": "export a trained run to ONNX and check it against PyTorch (needs [onnx])",
}


def command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the top-level options take no value), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with ``command``'s full sub-parser and a one-line entry for every other one."""
    parser = argparse.ArgumentParser(prog="vmt", description="Parameter-efficient multi-task dense prediction.")
    parser.add_argument("--version", action="version", version=f"vmt-adapter {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if name == command:
            importlib.import_module(f"vmt_adapter.commands.{name}").register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (VMTError, OSError) as exc:  # OSError: unreadable input or unwritable --out (its message names the path)
        if args.debug:
            raise
        print(f"vmt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if args.debug or (line := out_of_memory(exc)) is None:
            raise
        print(f"vmt {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vmt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
