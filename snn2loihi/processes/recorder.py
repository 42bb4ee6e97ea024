"""``SpikeRecorder``: a Lava sink that writes what it receives straight into a .npy file.

Lava's ``io.sink.RingBuffer`` keeps its data in a Var, and reading a Var back after the
run (``data.get()``) costs about 55 µs per value over Lava's channels: minutes for every
layer of a conv net. This process's model runs in its own OS process and writes each
step into a memory-mapped ``.npy`` file created by the caller; after the run the caller
reads the file. The values are the same the RingBuffer would hold.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class SpikeRecorder(AbstractProcess):
    """Records its input each step into ``path``, a .npy file of shape (*shape, num_steps).

    Args:
        shape: shape of the input port.
        path: an existing .npy file (``np.lib.format.open_memmap(..., mode="w+")``) of shape
            ``shape + (num_steps,)`` and an integer dtype.
    """

    def __init__(self, *, shape: tuple, path: str) -> None:
        super().__init__(shape=shape, path=path)
        self.a_in = InPort(shape=shape)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderModel(PyLoihiProcessModel):
    """Writes ``a_in`` of step t (1-based ``time_step``) into column t-1 of the file."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._file = np.load(proc_params["path"], mmap_mode="r+")

    def run_spk(self) -> None:
        self._file[..., self.time_step - 1] = self.a_in.recv()
