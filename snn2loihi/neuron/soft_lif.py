"""Discrete-time LIF neuron with soft (subtractive) or hard reset, slayer-compatible.

Built on :class:`lava.lib.dl.slayer.neuron.base.Neuron`, so it plugs into slayer's
blocks, and trained with the arithmetic it will have on Loihi. In slayer units (the
chip's integers divided by ``s_scale = scale · 64``), per step t::

    u[t] = D_i(u[t-1]) + z[t]                    z: weighted input spikes (N, ..., T)
    v[t] = D_v(v[t-1]) + u[t]                    (fixed point: clipped to ±(2^23 - 1)/s_scale)
    s[t] = H(v[t] - θ)                           strict: spike when v > θ
    v[t] = v[t] - θ·s[t]        (soft reset, exported as CUBA_SOFT)
    v[t] = v[t]·(1 - s[t])      (hard reset, exported as stock CUBA)

with ``D(x) = trunc(x · s_scale · (4096 - d) / 4096) / s_scale``: Loihi's 12-bit decay,
rounding toward zero on the integer state. Weights are on slayer's 8-bit grid (step
2/scale, clamped to [-256, 254]/scale), decays on the 12-bit grid and the threshold on the
mantissa grid 1/scale. Rounding uses straight-through gradients, so with
``fixed_point=True`` the float forward reproduces the emulator's integers (exactly in
float64; to float32 precision otherwise). ``fixed_point=False`` gives the ideal float
neuron for comparison.

Shapes: input and output (N, C, H, W, T) or (N, F, T).
"""
from __future__ import annotations

from typing import Optional

import torch
from lava.lib.dl.slayer.neuron.base import Neuron as SlayerNeuron
from lava.lib.dl.slayer.utils import quantize

from ..ir import DECAY_UNITY, HARD_RESET_TYPES, SOFT_RESET_TYPE
from .fused import VOLTAGE_LIMIT, lif_sequence
from .surrogate import Exponential, Surrogate, spike

RESETS = ("soft", "hard")


def _ste(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """``rounded`` in the forward pass, identity gradient."""
    return x + (rounded - x).detach()


class Neuron(SlayerNeuron):
    """Soft- or hard-reset LIF neuron with Loihi fixed-point training arithmetic.

    Args:
        threshold: θ in slayer units (the chip's vThMant / scale).
        current_decay: fraction of u lost per step, 0..1 (1: u holds only this step's input).
        voltage_decay: fraction of v lost per step, 0..1 (0: integrate-and-fire).
        reset: ``"soft"`` (subtract θ) or ``"hard"`` (v = 0).
        surrogate: spike pseudo-derivative; slayer's exponential by default. For a
            spike-time-dependent surrogate (``needs_spike_time``, e.g. STDB) the forward
            pass also tracks each neuron's last spike step (reset per call, i.e. per batch)
            and hands ``dt`` to the backward pass; the spikes themselves are unchanged.
        scale: weight scale, a power of two; 64 (slayer's default) is weight exponent 0,
            each doubling adds one bit of weight and state resolution.
        fixed_point: model the chip's rounding (True) or ideal float dynamics (False).
        requires_grad: learn the decays.
        dropout: slayer-style dropout module applied to the output spikes.
        detach_reset: stop the gradient through the reset term.

    Example:
        >>> neuron = Neuron(threshold=1.0, current_decay=1.0, voltage_decay=0.0)
        >>> spikes = neuron(torch.rand(8, 10, 16))   # (N, F, T)
    """

    def __init__(self, threshold: float, current_decay: float = 1.0, voltage_decay: float = 0.0,
                 reset: str = "soft", surrogate: Optional[Surrogate] = None, scale: int = 1 << 6,
                 fixed_point: bool = True, requires_grad: bool = False,
                 dropout: Optional[torch.nn.Module] = None, detach_reset: bool = False):
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, found {reset!r}")
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two, found {scale}")
        for name, value in (("current_decay", current_decay), ("voltage_decay", voltage_decay)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], found {value}")
        super().__init__(threshold=threshold, p_scale=DECAY_UNITY, w_scale=scale, s_scale=scale << 6,
                         dropout=dropout, requires_grad=requires_grad)
        if self.threshold <= 0:
            raise ValueError(f"threshold {threshold} rounds to a non-positive mantissa at scale {scale}")
        self.reset = reset
        self.surrogate = surrogate if surrogate is not None else Exponential()
        self.fixed_point = fixed_point
        self.detach_reset = detach_reset
        #: Use the fused time loop when possible (False: always the step-by-step reference).
        self.fused = True
        self.current_decay = torch.nn.Parameter(torch.tensor([DECAY_UNITY * current_decay]),
                                                requires_grad=requires_grad)
        self.voltage_decay = torch.nn.Parameter(torch.tensor([DECAY_UNITY * voltage_decay]),
                                                requires_grad=requires_grad)
        #: Initial voltage of every sample (slayer units), per channel (C,) or per neuron,
        #: or None for rest (0). On the grid 1/s_scale in fixed point; exported as ``v_init``.
        self.register_buffer("v_init", None)
        #: (first, stop): the steps of z's time axis at which the neurons may spike (outside
        #: them v integrates without spike or reset), or None for every step. Set by the
        #: caller that knows how its input maps to the chip's steps (a converted network's
        #: hold, :mod:`snn2loihi.conversion.network`).
        self.fire_window: Optional[tuple[int, int]] = None

    # --- device view -------------------------------------------------------------------
    @property
    def cx_current_decay(self) -> int:
        """iDecay: the 12-bit current decay."""
        return int(quantize(self.current_decay.detach().clamp(0, DECAY_UNITY)).item())

    @property
    def cx_voltage_decay(self) -> int:
        """vDecay: the 12-bit voltage decay."""
        return int(quantize(self.voltage_decay.detach().clamp(0, DECAY_UNITY)).item())

    @property
    def device_params(self) -> dict:
        """The ``neuron/`` fields of a netx file."""
        return {"type": SOFT_RESET_TYPE if self.reset == "soft" else HARD_RESET_TYPES[0],
                "iDecay": self.cx_current_decay,
                "vDecay": self.cx_voltage_decay,
                "vThMant": self.v_th_mant,
                "refDelay": 1,
                "gradedSpike": False}

    # --- dynamics ----------------------------------------------------------------------
    def _decay(self, x: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
        """One step of leak: ``D(x)`` with the chip's round-toward-zero in fixed point."""
        decay = quantize(decay.clamp(0, DECAY_UNITY)) if self.fixed_point else decay.clamp(0, DECAY_UNITY)
        kept = x * (DECAY_UNITY - decay) / DECAY_UNITY
        if not self.fixed_point:
            return kept
        scaled = kept * self.s_scale
        return _ste(scaled, torch.trunc(scaled)) / self.s_scale

    def _initial_voltage(self, like: torch.Tensor) -> torch.Tensor:
        """``v_init`` broadcast to ``like`` (N, *shape): a (C,) vector spans the channel axis."""
        v0 = self.v_init.to(like.dtype)
        if self.fixed_point:
            v0 = _ste(v0 * self.s_scale, torch.round(v0 * self.s_scale)) / self.s_scale
        return v0.reshape(v0.shape + (1,) * (like.dim() - 1 - v0.dim())).expand_as(like)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Spikes (same shape as ``z``) for weighted input ``z`` (N, ..., T).

        Runs the fused time loop (:mod:`snn2loihi.neuron.fused`: one autograd node, same
        spikes, hand-written BPTT) unless the decays are learnable, which needs the
        step-by-step reference :meth:`forward_reference`.
        """
        if z.dim() < 3:
            raise ValueError(f"expected input (N, ..., T) with at least 3 dimensions, found {tuple(z.shape)}")
        if self.shape is None:
            self.shape = z.shape[1:-1]
        if not self.fused or self.current_decay.requires_grad or self.voltage_decay.requires_grad:
            return self.forward_reference(z)
        v0 = None if self.v_init is None else self._initial_voltage(z.new_zeros(z.shape[:-1]))
        if self.fire_window is not None:
            return self._windowed(z, v0)
        spikes = self._sequence(z, v0)
        return self.drop(spikes) if self.drop is not None else spikes

    def _sequence(self, z: torch.Tensor, v0: Optional[torch.Tensor]) -> torch.Tensor:
        """The fused time loop over all of z from voltage v0 (None: rest)."""
        decays = [d.detach().clamp(0, DECAY_UNITY) for d in (self.current_decay, self.voltage_decay)]
        if self.fixed_point:
            decays = [quantize(d) for d in decays]
        return lif_sequence(z, v0, *decays, self.threshold, self.reset == "soft", self.detach_reset, self.surrogate,
                            DECAY_UNITY, self.s_scale if self.fixed_point else None)

    def _windowed(self, z: torch.Tensor, v0: Optional[torch.Tensor]) -> torch.Tensor:
        """Spikes with a firing window, for inference of integrate-and-fire neurons: before the
        window v only sums its input (no leak, no current memory, no spike), so it enters the
        fused loop as the initial voltage of the window; no spike after it. Equal to the
        reference loop when no partial sum reaches the 24-bit limit (checked; otherwise, and
        for leaky neurons or with gradients, the reference loop runs)."""
        first, stop = (min(edge, z.shape[-1]) for edge in self.fire_window)
        integrate_and_fire = self.cx_current_decay == DECAY_UNITY and self.cx_voltage_decay == 0
        if torch.is_grad_enabled() and z.requires_grad or not integrate_and_fire or self.drop is not None:
            return self.forward_reference(z)
        start = z.new_zeros(z.shape[:-1]) if v0 is None else v0
        if first:
            partial = start.unsqueeze(-1) + torch.cumsum(z[..., :first], dim=-1)
            if self.fixed_point and float(partial.abs().max()) >= VOLTAGE_LIMIT / self.s_scale:
                return self.forward_reference(z)
            start = partial[..., -1].contiguous()
        spikes = torch.zeros_like(z)
        if stop > first:
            spikes[..., first:stop] = self._sequence(z[..., first:stop], start)
        return spikes

    def window_count(self, a: torch.Tensor, steps: int,
                     bounds: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """Spikes of soft-reset integrate-and-fire neurons that open a firing window of
        ``steps`` steps holding ``charge = v_init + a`` (slayer units; ``a`` (N, ...) the
        input gathered before the window) and receive nothing more in it.

        After k spikes v is ``charge - k·θ`` and the strict ``v > θ`` fires again, so::

            N = clip(⌈charge/θ⌉ - 1, 0, steps)

        (in float64: on the fixed-point grid, charge/θ is a ratio of integers below 2^24).
        In fixed point the step-by-step neuron does that only if no state reached the 24-bit
        limit on the way. ``bounds = (gain, loss)`` (broadcastable to ``a``) bound the input's
        positive and negative parts, so that every partial sum of it, and every step's
        current, lies in ``[-loss, gain]``: with ``a = W·N_in``, ``(W⁺·N_in, W⁻·N_in)`` or
        coarser. Where v (from ``v_init``) or a current could leave ±(2^23 - 1) within them,
        the result is None.
        """
        if self.reset != "soft" or self.cx_current_decay != DECAY_UNITY or self.cx_voltage_decay != 0:
            raise ValueError("window_count needs soft-reset integrate-and-fire neurons (no leak, no current memory)")
        dtype, a = a.dtype, a.double()
        v0 = torch.zeros_like(a) if self.v_init is None else self._initial_voltage(a)
        if self.fixed_point:
            if bounds is None:
                raise ValueError("fixed-point window_count needs bounds on the input's positive and negative parts")
            gain, loss = (b.double() for b in bounds)
            top = torch.maximum(torch.maximum(gain, loss), v0 + gain).max()
            if max(float(top), float(-(v0 - loss).min())) > VOLTAGE_LIMIT / self.s_scale:
                return None
        return (torch.ceil((v0 + a) / self.threshold) - 1).clamp(0, steps).to(dtype)

    def forward_reference(self, z: torch.Tensor) -> torch.Tensor:
        """The step-by-step definition of :meth:`forward`, differentiated by autograd
        (learnable decays and the firing window included)."""
        u = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        v = torch.zeros_like(u) if self.v_init is None else self._initial_voltage(u)
        theta = self.threshold
        # Spike-time state for surrogates that need it (STDB): the step of each neuron's
        # last spike, so that dt = t - last_spike. It only feeds the backward pass.
        last_spike = (torch.full_like(u, self.surrogate.initial_spike_time)
                      if self.surrogate.needs_spike_time else None)
        first, stop = self.fire_window if self.fire_window is not None else (0, z.shape[-1])
        out = []
        for t in range(z.shape[-1]):
            u = self._decay(u, self.current_decay) + z[..., t]
            v = self._decay(v, self.voltage_decay) + u
            if self.fixed_point:  # the chip's 24-bit v saturates (straight-through gradient)
                limit = VOLTAGE_LIMIT / self.s_scale
                v = _ste(v, v.clamp(-limit, limit))
            s = spike(v - theta, self.surrogate, theta, None if last_spike is None else t - last_spike)
            if not first <= t < stop:
                s = torch.zeros_like(s)
            if last_spike is not None:
                last_spike = last_spike.masked_fill(s.detach() > 0, float(t))
            r = s.detach() if self.detach_reset else s
            v = v - theta * r if self.reset == "soft" else v * (1 - r)
            out.append(s)
        spikes = torch.stack(out, dim=-1)
        return self.drop(spikes) if self.drop is not None else spikes
