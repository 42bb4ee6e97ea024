"""Process models of :class:`LIFSoftReset` (bit-accurate fixed point and float) and of
:class:`LIFSoftResetWindowed` (fixed point)."""
import numpy as np
from lava.magma.core.decorator import implements
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifModelBitAcc, PyLifModelFloat

# Absolute import: Lava loads this file by path (as module "models") when it searches for
# the models of LIFSoftReset.
from snn2loihi.processes.soft_lif import LIFSoftReset, LIFSoftResetWindowed


@implements(proc=LIFSoftReset, protocol=LoihiProtocol)
class PyLifSoftResetModelBitAcc(PyLifModelBitAcc):
    """Lava's bit-accurate LIF (tags ``bit_accurate_loihi``, ``fixed_pt``) with
    ``v -= vth << 6`` on a spike."""

    implements_process = None  # inherited from PyLifModelBitAcc (LIF); re-bound above

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        self.v[spike_vector] -= self.effective_vth


@implements(proc=LIFSoftReset, protocol=LoihiProtocol)
class PyLifSoftResetModelFloat(PyLifModelFloat):
    """Lava's float LIF (tag ``floating_pt``) with ``v -= vth`` on a spike."""

    implements_process = None

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        self.v[spike_vector] -= self.vth


@implements(proc=LIFSoftResetWindowed, protocol=LoihiProtocol)
class PyLifSoftResetWindowedModelBitAcc(PyLifSoftResetModelBitAcc):
    """:class:`PyLifSoftResetModelBitAcc` that spikes only inside the firing window."""

    implements_process = None
    fire_first: int = LavaPyType(int, np.int32)
    fire_stop: int = LavaPyType(int, np.int32)
    period: int = LavaPyType(int, np.int32)

    def spiking_activation(self) -> np.ndarray:
        first, stop, period = (int(np.asarray(var).ravel()[0]) for var in (self.fire_first, self.fire_stop,
                                                                            self.period))
        step = (self.time_step - 1) % period  # Lava's time_step starts at 1
        return super().spiking_activation() & (first <= step < stop)
