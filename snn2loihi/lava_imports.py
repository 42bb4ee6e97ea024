"""Quiet, lazy access to Lava and lava-dl.

Importing ``lava.lib.dl`` prints banners on stdout (a Prophesee toolbox warning, a CUDA
notice) that would corrupt the CLI's output; these helpers import with stdout silenced.
Only the modules that run Lava import this, so ``snn2loihi info``/``energy`` and the
emulator stay fast to start.
"""
from __future__ import annotations

import contextlib
import importlib
import io
from types import ModuleType


def quiet_import(name: str) -> ModuleType:
    """Import module ``name`` with its stdout/stderr chatter discarded."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return importlib.import_module(name)


def netx() -> ModuleType:
    """``lava.lib.dl.netx`` (hdf5, blocks, utils)."""
    return quiet_import("lava.lib.dl.netx")
