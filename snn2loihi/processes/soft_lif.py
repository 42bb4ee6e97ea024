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
from lava.proc.lif.process import LIF


class LIFSoftReset(LIF):
    """Leaky integrate-and-fire neurons with a subtractive (soft) reset.

    Parameters are those of :class:`lava.proc.lif.process.LIF` (shape, u, v, du, dv,
    bias_mant, bias_exp, vth, name, log_config).
    """
