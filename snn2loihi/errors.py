"""User-facing errors: each names the file (or object) and the problem in one line."""
from __future__ import annotations


class Snn2LoihiError(Exception):
    """Base class of the errors the CLI reports as one line without a traceback."""


class NetxFormatError(Snn2LoihiError):
    """A netx file is missing, unreadable, malformed, or uses an unsupported feature."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputError(Snn2LoihiError):
    """An input array (file or in memory) does not fit the network."""


class QuantizationError(Snn2LoihiError):
    """A float parameter cannot be represented in Loihi's fixed point without overflow."""


class LavaRunError(Snn2LoihiError):
    """A Lava run failed; the runtime has been stopped."""


class DataError(Snn2LoihiError):
    """A data file or folder is missing, truncated or malformed (names file and byte offset)."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TrainingError(Snn2LoihiError):
    """Training cannot go on: a non-finite loss or gradient, or a recipe that does not fit."""


class CheckpointError(Snn2LoihiError):
    """A checkpoint is missing, unreadable, or does not match the recipe."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
