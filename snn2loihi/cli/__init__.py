"""Command line: ``snn2loihi COMMAND``. One module per command in this package.

Every command exits 0 on success. Bad input (missing or malformed files, wrong shapes,
unsupported layers) prints one line ``snn2loihi: error: FILE: problem`` and exits 2.

A command module defines ``register(subparsers)``, which adds its sub-parser and sets
``func``; list the module in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from ..allocator import keep_freed_memory
from ..errors import Snn2LoihiError

EXIT_BAD_INPUT = 2
#: Command modules, in the order ``--help`` lists them.
COMMANDS = ["demo", "info", "simulate", "energy", "plan", "report", "deploy", "nir", "train", "export", "convert"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn2loihi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``snn2loihi`` console script."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.func(args) or 0
    except Snn2LoihiError as err:
        print(f"snn2loihi: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("snn2loihi: interrupted", file=sys.stderr)
        return 130
