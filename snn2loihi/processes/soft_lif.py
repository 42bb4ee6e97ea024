"""The soft-reset LIF as a Lava process.

Same variables and ports as Lava's :class:`lava.proc.lif.process.LIF`; only the reset
differs: a spike subtracts the threshold from the voltage instead of zeroing it::

    u[t] = u[t-1]·(1 - du) + a_in[t]
    v[t] = v[t-1]·(1 - dv) + u[t] + bias
    s[t] = v[t] > vth
    v[t] = v[t] - vth   where s[t]        (LIF: v[t] = 0)

The fixed-point model (tag ``fixed_pt``) is Lava's ``PyLifModelBitAcc`` with that one
change, so every other bit of arithmetic (12-bit decays, 24-bit wrap of u, clip of v,
threshold ``vth << 6``) is Lava's own.
"""
from lava.magma.core.process.variable import Var
from lava.proc.lif.process import LIF


class LIFSoftReset(LIF):
    """Leaky integrate-and-fire neurons with a subtractive (soft) reset.

    Parameters are those of :class:`lava.proc.lif.process.LIF` (shape, u, v, du, dv,
    bias_mant, bias_exp, vth, name, log_config).
    """


class LIFSoftResetWindowed(LIFSoftReset):
    """:class:`LIFSoftReset` that may spike only inside a firing window of each sample.

    Samples run back to back, ``period`` steps each; at step ``k`` of a sample (0-based)
    a neuron spikes only if ``first <= k < stop`` and ``v > vth``; outside the window v
    integrates without spike or reset (``fire_window`` in :mod:`snn2loihi.ir`).

    Args:
        fire_window: (first, stop) steps within a sample.
        period: steps per sample (the reset interval of the run).
        **kwargs: the parameters of :class:`LIFSoftReset`.
    """

    def __init__(self, *, fire_window: tuple, period: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        first, stop = (int(edge) for edge in fire_window)
        self.fire_first = Var((1,), init=first)
        self.fire_stop = Var((1,), init=stop)
        self.period = Var((1,), init=int(period))
