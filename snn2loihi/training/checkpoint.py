"""Atomic, code-free checkpoints.

A checkpoint is a dict of plain data and tensors: the recipe, the architecture (see
:mod:`snn2loihi.training.spec`), the ``state_dict`` s of model, optimizer and learning-rate
schedule, the position in the schedule and the history. It is written to a temporary file
in the same folder and renamed over the old one (``os.replace``), so a crash leaves either
the old or the new file, never half of one; it is read with ``torch.load(...,
weights_only=True)``, which cannot run code from the file.
"""
from __future__ import annotations

import os
import pickle
import zipfile

import torch

from ..atomic import atomic_path
from ..errors import CheckpointError

FORMAT = "snn2loihi-checkpoint"
VERSION = 1


def save_checkpoint(path: str, state: dict) -> None:
    """Write ``state`` (plus format and version) atomically to ``path``."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises:
        CheckpointError: missing, unreadable, not a checkpoint, or of another version.
    """
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(path, f"not a readable checkpoint ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(path, f"not an {FORMAT} file")
    if state.get("version") != VERSION:
        raise CheckpointError(path, f"checkpoint version {state.get('version')} is not {VERSION}")
    return state
