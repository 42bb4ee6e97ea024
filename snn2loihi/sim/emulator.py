"""Batched fixed-point emulator: Lava's integer arithmetic, many samples at once.

Timing follows a Lava run exactly. Every sample starts from rest (u = v = 0, empty
synaptic buffers), and each synapse layer delivers at step t what it received at step
t-1, so the last layer responds ``net.latency`` steps after the input. Give the emulator
(and the Lava runner) the same window of T steps and both return identical spikes at
every layer; callers pad the input with ``net.latency`` zero steps to see the whole
response.

Input ``x`` is (N, *input_shape, T): binary spikes when the input layer has no neuron,
otherwise the integers the input neuron's ``a_in`` port receives each step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch

from ..ir import DECAY_UNITY, FlattenLayer, InputLayer, Network, layer_neuron
from ..neuron.fixed_point import ACT_SHIFT, BIAS_EXP, STATE_LIMIT, VTH_SHIFT, Overflow, lif_step
from .synapses import Synapse, bias_tensor, magnitude, shift_one_step


@dataclass
class SimResult:
    """Spikes of a simulation run.

    Attributes:
        spikes: layer index → uint8 array (N, *layer_shape, T), for every recorded layer
            that owns neurons (flatten layers are skipped).
        overflow: 24-bit wraps of u and clips of v, and 24-bit wraps of conv outputs.
        conv_wraps: number of conv/pool synaptic sums that wrapped at 24 bits.
    """

    spikes: dict = field(default_factory=dict)
    overflow: Overflow = field(default_factory=Overflow)
    conv_wraps: int = 0

    @property
    def output(self) -> np.ndarray:
        """Spikes of the last layer, (N, *shape, T)."""
        return self.spikes[max(self.spikes)]


class Emulator:
    """Runs a :class:`~snn2loihi.ir.Network` with Loihi's integer arithmetic.

    Example:
        >>> emu = Emulator(net)
        >>> result = emu.run(x, record_all=True)   # x: (N, C, H, W, T)
        >>> counts = result.output.sum(-1)          # output spike counts (N, F)
    """

    def __init__(self, net: Network, device: str | torch.device = "cpu"):
        self.net = net
        self.device = torch.device(device)
        self._synapses = {i: Synapse(layer, self.device) for i, layer in enumerate(net.layers)
                          if i > 0 and not isinstance(layer, FlattenLayer)}
        self._bias = {i: bias_tensor(layer, self.device) for i, layer in enumerate(net.layers)}

    def run(self, x: np.ndarray | torch.Tensor, record_all: bool = False, batch_size: int = 256,
            progress: Optional[Iterable] = None) -> SimResult:
        """Simulate every sample of ``x`` (N, *input_shape, T) and return its spikes.

        Args:
            x: integer input; see the module docstring.
            record_all: keep every layer's spikes, not only the last layer's.
            batch_size: samples simulated together.
            progress: optional callable wrapping the batch iterator (e.g. ``tqdm``).
        """
        x = torch.as_tensor(np.asarray(x), dtype=torch.int64)
        expected = tuple(self.net.input.shape)
        if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected:
            raise ValueError(f"input has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, expected))}, T)")
        result = SimResult()
        chunks: dict[int, list] = {}
        starts = range(0, x.shape[0], batch_size)
        for start in (progress(starts) if progress else starts):
            batch = x[start:start + batch_size].to(self.device)
            for index, spikes in self._run_batch(batch, result).items():
                if record_all or index == len(self.net.layers) - 1:
                    chunks.setdefault(index, []).append(spikes.to(torch.uint8).cpu().numpy())
        result.spikes = {i: np.concatenate(c) for i, c in chunks.items()}
        return result

    def _run_batch(self, x: torch.Tensor, result: SimResult) -> dict:
        spikes: dict = {}
        # Without an input neuron, x feeds a synapse whose port is binary: Lava reads any
        # non-zero value as a spike.
        s = x if self.net.input.neuron is not None else x != 0
        for i, layer in enumerate(self.net.layers):
            if isinstance(layer, FlattenLayer):
                s = s.reshape(s.shape[0], -1, s.shape[-1])
                continue
            if isinstance(layer, InputLayer):
                if layer.neuron is None:
                    continue
                a = x  # the input port drives the input neuron directly, no synaptic delay
                max_in = magnitude(x)
            else:
                max_in = self._synapses[i].max_abs_input(magnitude(s))
                a, wraps = self._synaptic_input(i, s)
                result.conv_wraps += wraps
            s = self._integrate(layer_neuron(layer), a, self._bias[i], max_in, result.overflow)
            spikes[i] = s
        return spikes

    def _synaptic_input(self, index: int, s: torch.Tensor) -> tuple[torch.Tensor, int]:
        """All T steps of one synapse layer at once: (B, *in, T) → delayed (B, *out, T)."""
        b, t = s.shape[0], s.shape[-1]
        flat = s.movedim(-1, 1).reshape((b * t,) + tuple(s.shape[1:-1]))
        a, wraps = self._synapses[index](flat)
        a = a.reshape((b, t) + tuple(a.shape[1:])).movedim(1, -1)
        return shift_one_step(a), wraps

    @staticmethod
    def _integrate(neuron, a: torch.Tensor, bias: Optional[torch.Tensor], max_in: int,
                   overflow: Overflow) -> torch.Tensor:
        """Run the neurons over all steps of ``a`` (B, *shape, T) → spikes (B, *shape, T).

        When a conservative bound shows u and v cannot leave 24 bits within T steps
        (|u| ≤ T·max|a|·64, |v| ≤ T·(max|u| + |bias|·64) + θ·64), the per-step wrap/clip is
        skipped, and without a decay multiply the states fit int32.
        """
        steps = a.shape[-1]
        max_bias = int(bias.abs().max()) if bias is not None else 0
        bound_u = max_in << ACT_SHIFT if neuron.i_decay == DECAY_UNITY else steps * (max_in << ACT_SHIFT)
        bound_v = steps * (bound_u + (max_bias << BIAS_EXP)) + (neuron.vth_mant << VTH_SHIFT)
        may_overflow = bound_u >= STATE_LIMIT or bound_v >= STATE_LIMIT - 1
        no_multiply = neuron.i_decay in (0, DECAY_UNITY) and neuron.v_decay in (0, DECAY_UNITY)
        dtype = torch.int32 if no_multiply and not may_overflow else torch.int64
        a_t = a.movedim(-1, 0).to(dtype).contiguous()  # time first: contiguous steps
        b = bias.to(dtype) if bias is not None else 0
        u = torch.zeros(a_t.shape[1:], dtype=dtype, device=a.device)
        v = torch.zeros_like(u)
        out = torch.empty(a_t.shape, dtype=torch.bool, device=a.device)
        for t in range(steps):
            u, v, out[t] = lif_step(u, v, a_t[t], neuron, b, overflow, may_overflow)
        return out.movedim(0, -1)
