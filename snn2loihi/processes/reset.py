"""``ResetTo``: Lava's periodic ``Reset`` with one reset value per element.

Lava's :class:`lava.proc.io.reset.Reset` writes a single scalar into a variable every
``interval`` steps. Neurons with an initial voltage (``v_init`` in :mod:`snn2loihi.ir`)
must return to *their own* value between samples, so this process holds an array of the
variable's shape and writes it back at the same phase (``(t - 1) % interval == offset``,
after the step, exactly as ``Reset``).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.io.reset import AbstractPyReset


class ResetTo(AbstractProcess):
    """Writes ``value`` (the target variable's shape) into a variable every ``interval`` steps.

    Args:
        value: integer array of the variable's shape (e.g. Lava's (W, H, C) neuron shape).
        interval: reset period in steps.
        offset: phase of the reset within the period.
    """

    def __init__(self, *, value: np.ndarray, interval: int, offset: int = 0) -> None:
        value = np.asarray(value, dtype=np.int64)
        super().__init__(value=value, interval=interval, offset=offset)
        self.reset_value = Var(value.shape, init=value)
        self.interval = Var((1,), init=interval)
        self.offset = Var((1,), init=offset % interval)
        self.state = RefPort(value.shape)

    def connect_var(self, var: Var) -> None:
        """Reset ``var`` (whose shape must be ``value``'s)."""
        if tuple(var.shape) != tuple(self.reset_value.shape):
            raise ValueError(f"reset value of shape {self.reset_value.shape} does not fit variable {var.shape}")
        self.state.connect_var(var)
        self._post_init()


@implements(proc=ResetTo, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyResetToFixed(AbstractPyReset):
    """Fixed-point model: ``state = reset_value`` (element-wise) after the reset step."""

    state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, int)
    reset_value: np.ndarray = LavaPyType(np.ndarray, int)
