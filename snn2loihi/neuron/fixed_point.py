"""Loihi's integer LIF arithmetic as a pure function, for the batched emulator.

This is the integer twin of :mod:`snn2loihi.neuron.soft_lif` (the float training
neuron); both implement the equations in :class:`snn2loihi.ir.NeuronSpec`, and the
tests check them against each other and against Lava's ``PyLifModelBitAcc``.

Everything is ``torch.int64`` and element-wise, so any shape works: (N, ...) per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ir import DECAY_UNITY, STATE_BITS, NeuronSpec

DECAY_SHIFT = 12
#: Synaptic input and thresholds are MSB-aligned by 6 bits; bias exponent is 6 in netx.
ACT_SHIFT = 6
VTH_SHIFT = 6
BIAS_EXP = 6
STATE_LIMIT = 1 << (STATE_BITS - 1)


@dataclass
class Overflow:
    """Counts of 24-bit state events seen by the emulator (Lava wraps u and clips v)."""

    current_wraps: int = 0
    voltage_clips: int = 0


def decay(x: torch.Tensor, decay_const: int) -> torch.Tensor:
    """``sign(y) · (|y| >> 12)`` with ``y = x·(4096-d)``: the 12-bit decay, rounding toward zero.

    (Equal to truncating division ``y / 4096``; d = 4096 gives 0 and d = 0 gives x.)
    """
    if decay_const == DECAY_UNITY:
        return torch.zeros_like(x)
    if decay_const == 0:
        return x
    return torch.div(x * (DECAY_UNITY - decay_const), DECAY_UNITY, rounding_mode="trunc")


def lif_step(u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor, neuron: NeuronSpec,
             bias: torch.Tensor | int = 0, overflow: Overflow | None = None, may_overflow: bool = True,
             fires: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One time step of Loihi's CUBA compartment, bit-exact with Lava's fixed-point LIF.

    Args:
        u, v: integer current and voltage states (24-bit range), any shape; int64 when a
            decay is neither 0 nor 4096 (the product u·(4096-d) needs 36 bits).
        a_in: synaptic input of this step (same shape), before the ``<< 6``.
        neuron: decays, threshold and reset type.
        bias: bias mantissa (broadcastable), scaled by ``<< 6`` as netx sets bias_exp=6.
        overflow: if given, wraps of u and clips of v are added to it.
        may_overflow: False when the caller has proven |u|, |v| stay inside 24 bits; the
            wrap of u and the clip of v are then skipped (they would change nothing).
        fires: False outside the layer's firing window (``fire_window`` in
            :mod:`snn2loihi.ir`): v integrates, no spike, no reset.

    Returns:
        (u, v, spikes) with spikes as a bool tensor.
    """
    drive = a_in << ACT_SHIFT
    u = drive if neuron.i_decay == DECAY_UNITY else decay(u, neuron.i_decay) + drive
    if may_overflow:
        # Lava wraps the current register modulo 2^24 (the second test uses the un-wrapped
        # value, exactly as lava.proc.lif.models does).
        wrapped = torch.where(u > STATE_LIMIT, u - 2 * STATE_LIMIT, u)
        wrapped = torch.where(wrapped <= -STATE_LIMIT, u + 2 * STATE_LIMIT, wrapped)
        if overflow is not None:
            overflow.current_wraps += int((wrapped != u).sum())
        u = wrapped
    v = decay(v, neuron.v_decay) + u
    if torch.is_tensor(bias) or bias:
        v = v + (bias << BIAS_EXP)
    if may_overflow:
        clipped = torch.clamp(v, -STATE_LIMIT + 1, STATE_LIMIT - 1)
        if overflow is not None:
            overflow.voltage_clips += int((clipped != v).sum())
        v = clipped
    vth = neuron.vth_mant << VTH_SHIFT
    spikes = v > vth if fires else torch.zeros(v.shape, dtype=torch.bool, device=v.device)
    if neuron.soft_reset:
        v = torch.where(spikes, v - vth, v)  # keeps v's dtype (bool · int would widen it)
    else:
        v = v.masked_fill(spikes, 0)
    return u, v, spikes
