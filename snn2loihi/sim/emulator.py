"""Batched fixed-point emulator: Lava's integer arithmetic, many samples at once.

Timing follows a Lava run exactly. Every sample starts from rest (u = v = 0, empty
synaptic buffers), and each synapse layer delivers at step t what it received at step
t-1, so the last layer responds ``net.latency`` steps after the input. Give the emulator
(and the Lava runner) the same window of T steps and both return identical spikes at
every layer; callers pad the input with ``net.latency`` zero steps to see the whole
response.

Input ``x`` is (N, *input_shape, T): binary spikes when the input layer has no neuron,
otherwise the integers the input neuron's ``a_in`` port receives each step.

A layer with a :class:`~snn2loihi.ir.Skip` adds its second synapse group's output, also
delayed by one step, to ``a_in`` (as Lava sums two connections into one port); a layer
with ``v_init`` starts every sample from that voltage instead of 0; a layer with a
``fire_window`` (first, stop) spikes only at steps ``first <= t < stop`` of the sample
(outside it the compiled loop runs with a threshold v never reaches).

Inside, a (C, H, W) population lives channels-last, as (B, H, W, C) in memory, with 0/1
uint8 spikes: the layout and dtype of the exact int8 convolutions of
:mod:`snn2loihi.sim.int8_conv`, so that no layer converts or transposes its input. Dense
layers read a flattened (H, W, C) source through permuted weight columns. Results are
returned in the IR's (N, C, H, W, T) order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch

from ..ir import DECAY_UNITY, ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, PoolLayer, layer_neuron
from ..neuron import cpu_kernel
from ..neuron.fixed_point import ACT_SHIFT, BIAS_EXP, STATE_LIMIT, VTH_SHIFT, Overflow, lif_step
from .synapses import Synapse, bias_tensor, magnitude


#: Steps simulated together per layer: bounds the emulator's working memory independently of T.
TIME_CHUNK = 16


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
        layers = net.layers
        self._synapses = {i: Synapse(layer, self.device, _hwc_source(layer, _chain_source_shape(net, i)))
                          for i, layer in enumerate(layers) if i > 0 and not isinstance(layer, FlattenLayer)}
        self._bias = {i: bias_tensor(layer, self.device) for i, layer in enumerate(layers)}
        self._v_init = {i: _v_init_tensor(layer, self.device) for i, layer in enumerate(layers)}
        self._skips = {i: Synapse(net.skip_synapse(i), self.device,
                                  _hwc_source(layer, layers[layer.skip.source].out_shape))
                       for i, layer in enumerate(layers) if getattr(layer, "skip", None) is not None}

    def run(self, x: np.ndarray | torch.Tensor, record_all: bool = False, batch_size: int = 256,
            progress: Optional[Iterable] = None) -> SimResult:
        """Simulate every sample of ``x`` (N, *input_shape, T) and return its spikes.

        Args:
            x: integer input; see the module docstring.
            record_all: keep every layer's spikes, not only the last layer's.
            batch_size: samples simulated together.
            progress: optional callable wrapping the batch iterator (e.g. ``tqdm``).
        """
        x = torch.as_tensor(np.asarray(x))  # kept in its integer dtype; batches widen it
        if x.is_floating_point() or x.dtype == torch.bool:
            x = x.to(torch.int64)
        expected = tuple(self.net.input.shape)
        if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected:
            raise ValueError(f"input has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, expected))}, T)")
        result = SimResult()
        last = len(self.net.layers) - 1
        keep = {i for i, _ in self.net.neuron_layers} if record_all else {last}
        steps = x.shape[-1]
        spikes = {i: torch.empty((x.shape[0],) + tuple(layer.out_shape) + (steps,), dtype=torch.uint8)
                  for i, layer in self.net.neuron_layers if i in keep}
        starts = range(0, x.shape[0], batch_size)
        for start in (progress(starts) if progress else starts):
            batch = x[start:start + batch_size].to(self.device)
            self._run_batch(batch, result, {i: out[start:start + batch_size] for i, out in spikes.items()})
        result.spikes = {i: out.numpy() for i, out in spikes.items()}
        return result

    def _run_batch(self, x: torch.Tensor, result: SimResult, outputs: dict) -> None:
        """Simulate one batch and write the spikes of the layers in ``outputs`` into its
        (B, *shape, T) uint8 tensors.

        Time is streamed through the whole network in chunks of ``TIME_CHUNK`` steps: every
        layer advances one chunk (its synaptic input, then its neuron loop) before the next
        chunk starts, carrying u, v and the last presynaptic step of each synapse (Lava's
        one-step buffer) across chunks. Working memory is therefore independent of T.
        Inside, spikes and currents are time-major, (t, B, *stored): a step is one contiguous
        block and a chunk is a (t·B)-sample batch for the synapses, without copies.
        """
        steps = x.shape[-1]
        # Without an input neuron, x feeds a synapse whose port is binary: Lava reads any
        # non-zero value as a spike.
        stream = x if self.net.input.neuron is not None else x != 0
        populations = self._populations(magnitude(stream), steps, result)
        spike_input = self.net.input.neuron is None
        carried_input = None  # the input step before the chunk
        for t0 in range(0, steps, TIME_CHUNK):
            chunk = _stored(stream[..., t0:min(steps, t0 + TIME_CHUNK)])  # (t, B, *stored): time-major
            if carried_input is None:
                carried_input = torch.zeros_like(chunk[:1])
            # delayed[i]: layer i's spikes one step late, i.e. what its targets receive per step.
            delayed = {0: torch.cat([carried_input, chunk[:-1]], dim=0)} if spike_input else {}
            carried_input = chunk[-1:]
            source = 0
            for i, layer in enumerate(self.net.layers):
                if isinstance(layer, FlattenLayer):
                    d = delayed[source]
                    delayed[i], source = d.reshape(d.shape[0], d.shape[1], -1), i
                    continue
                if isinstance(layer, InputLayer) and layer.neuron is None:
                    continue
                if isinstance(layer, InputLayer):
                    pres = [chunk]
                else:
                    pres = [delayed[source]] + ([delayed[layer.skip.source]] if i in self._skips else [])
                spikes = populations[i].advance(pres)
                delayed[i], source = populations[i].delayed(), i
                if i in outputs:
                    _record(spikes, outputs[i][..., t0:t0 + spikes.shape[0]])

    def _populations(self, input_magnitude: int, steps: int, result: SimResult) -> dict:
        """One :class:`_Population` per layer that owns neurons, with its overflow bound."""
        populations = {}
        for i, layer in enumerate(self.net.layers):
            if isinstance(layer, FlattenLayer) or (isinstance(layer, InputLayer) and layer.neuron is None):
                continue
            if isinstance(layer, InputLayer):
                drives = [(None, input_magnitude)]
            else:
                first = not any(isinstance(l, (DenseLayer, ConvLayer, PoolLayer)) or
                                (isinstance(l, InputLayer) and l.neuron is not None) for l in self.net.layers[:i])
                drives = [(self._synapses[i], input_magnitude if first else 1)]
                if i in self._skips:
                    drives.append((self._skips[i], 1))
            populations[i] = _Population(layer_neuron(layer), drives, self._bias[i], self._v_init[i], steps, result,
                                         getattr(layer, "fire_window", None))
        return populations


class _Population:
    """One layer's neurons and the synapses that drive them, advanced chunk by chunk.

    When a conservative bound shows u and v cannot leave 24 bits within T steps
    (|u| ≤ T·max|a|·64, |v| ≤ |v_init| + T·(max|u| + |bias|·64) + θ·64), the per-step
    wrap/clip is skipped, and without a decay multiply the states fit int32.

    The steps of a chunk run in the compiled loop of :mod:`snn2loihi.neuron.cpu_kernel`
    on CPU (one pass, states updated in place), else as :func:`lif_step` per step; the
    two are equal bit for bit, overflow counts included (tested).
    """

    def __init__(self, neuron, drives: list, bias: Optional[torch.Tensor], v_init: Optional[torch.Tensor],
                 steps: int, result: SimResult, fire_window: Optional[tuple] = None):
        self.neuron = neuron
        #: (first, stop) steps of the sample in which the neurons may spike (None: all).
        self.fire_window = fire_window
        #: Steps of the sample simulated before the current chunk.
        self.elapsed = 0
        self.synapses = [synapse for synapse, _ in drives]
        #: Bound on |input| of each drive (1 for spikes).
        self.sizes = [size for _, size in drives]
        max_in = sum(size if syn is None else syn.max_abs_input(size) for syn, size in drives)
        max_bias = int(bias.abs().max()) if bias is not None else 0
        bound_u = max_in << ACT_SHIFT if neuron.i_decay == DECAY_UNITY else steps * (max_in << ACT_SHIFT)
        bound_v = steps * (bound_u + (max_bias << BIAS_EXP)) + (neuron.vth_mant << VTH_SHIFT)
        bound_v += int(v_init.abs().max()) if v_init is not None else 0
        self.may_overflow = bound_u >= STATE_LIMIT or bound_v >= STATE_LIMIT - 1
        no_multiply = neuron.i_decay in (0, DECAY_UNITY) and neuron.v_decay in (0, DECAY_UNITY)
        self.dtype = torch.int32 if no_multiply and not self.may_overflow else torch.int64
        self.bias = bias.to(self.dtype) if bias is not None else 0
        self.v_init = v_init
        self.result = result
        self.u = self.v = None
        #: ``bias << 6`` over one step's neurons, for the compiled loop (built on first use).
        self.bias_shifted: Optional[torch.Tensor] = None
        #: (TIME_CHUNK + 1, B, *shape) spikes: step 0 the previous chunk's last, then this chunk's.
        self.buffer: Optional[torch.Tensor] = None
        self.steps = 0

    def advance(self, pres: list) -> torch.Tensor:
        """Spikes (t, B, *stored shape), as 0/1 uint8, of the next t steps.

        ``pres`` holds each drive's chunk, time-major (t, B, *in): the raw input of an input
        neuron, else the source layer's spikes already delayed by one step (Lava's synaptic
        buffer). The result is a view of this population's buffer, valid until its next
        chunk; :meth:`delayed` gives the same spikes one step late, for its targets.
        """
        kernel = cpu_kernel.compiled() if pres[0].device.type == "cpu" else None
        # The compiled loop reads a lone synapse's exact float sums directly (no cast pass).
        dtype = None if kernel is not None and len(pres) == 1 else self.dtype
        a = None
        for synapse, size, pre in zip(self.synapses, self.sizes, pres):
            part = pre.to(self.dtype) if synapse is None else self._current(synapse, size, pre, dtype)
            a = part if a is None else a + part
        if self.u is None:
            self.u = torch.zeros(a.shape[1:], dtype=self.dtype, device=a.device)
            self.v = torch.zeros_like(self.u) if self.v_init is None else self.u + self.v_init.to(self.dtype)
            self.buffer = torch.empty((TIME_CHUNK + 1,) + tuple(a.shape[1:]), dtype=torch.uint8, device=a.device)
            self.buffer[0] = 0  # nothing was sent before the first step
        else:
            self.buffer[0] = self.buffer[self.steps]  # the previous chunk's last step
            self.elapsed += self.steps
        self.steps = a.shape[0]
        out = self.buffer[1:self.steps + 1]
        for start, stop, fires in self._segments():
            self._integrate(kernel, a[start:stop], out[start:stop], fires)
        return out

    def _segments(self) -> list:
        """(start, stop, fires) pieces of the current chunk, split at the firing window."""
        if self.fire_window is None:
            return [(0, self.steps, True)]
        first, stop = (min(max(edge - self.elapsed, 0), self.steps) for edge in self.fire_window)
        return [(a, b, fires) for a, b, fires in ((0, first, False), (first, stop, True), (stop, self.steps, False))
                if b > a]

    def _integrate(self, kernel, a: torch.Tensor, out: torch.Tensor, fires: bool) -> None:
        """Advance u, v over the steps of ``a`` (t, B, *shape), writing spikes into ``out``;
        ``fires=False``: no neuron may spike (outside the firing window)."""
        if kernel is None:
            for t in range(a.shape[0]):
                self.u, self.v, spikes = lif_step(self.u, self.v, a[t], self.neuron, self.bias,
                                                  self.result.overflow, self.may_overflow, fires)
                out[t] = spikes
            return
        if self.bias_shifted is None:
            self.bias_shifted = (torch.empty(0, dtype=self.dtype) if not torch.is_tensor(self.bias) else
                                 (self.bias << BIAS_EXP).expand(self.u.shape).contiguous())
        n = self.neuron
        # v never exceeds STATE_LIMIT - 1 (clipped, or bounded when may_overflow is False)
        vth = n.vth_mant << VTH_SHIFT if fires else STATE_LIMIT
        wraps, clips = kernel.lif_integer(a.contiguous(), self.u, self.v, self.bias_shifted, out, n.i_decay,
                                          n.v_decay, DECAY_UNITY, ACT_SHIFT, vth, n.soft_reset,
                                          self.may_overflow, STATE_LIMIT)
        self.result.overflow.current_wraps += wraps
        self.result.overflow.voltage_clips += clips

    def delayed(self) -> torch.Tensor:
        """The last chunk's spikes one step late (t, B, *shape): step 0 is the step before it."""
        return self.buffer[:self.steps]

    def _current(self, synapse: Synapse, size: int, pre: torch.Tensor, dtype: Optional[torch.dtype]
                 ) -> torch.Tensor:
        """Synaptic input (t, B, *stored out) for the delayed presynaptic chunk ``pre``
        (t, B, *stored in): conv and pool layers see their channels-last input as a
        (t·B, C, H, W) view and return a channels-last result."""
        t, b = pre.shape[:2]
        flat = pre.reshape((t * b,) + tuple(pre.shape[2:]))
        conv = synapse.geometry is not None
        a, wraps = synapse(flat.permute(0, 3, 1, 2) if conv else flat, dtype, size)
        self.result.conv_wraps += wraps
        if conv:
            a = a.permute(0, 2, 3, 1).contiguous()
        return a.reshape((t, b) + tuple(a.shape[1:]))


def _v_init_tensor(layer, device: torch.device) -> Optional[torch.Tensor]:
    """Initial voltages (raw units), one per channel or neuron: broadcastable to the stored
    (B, H, W, C) or (B, F), or None."""
    v_init = getattr(layer, "v_init", None)
    if v_init is None:
        return None
    return torch.as_tensor(v_init, dtype=torch.int64, device=device)


def _stored(x: torch.Tensor) -> torch.Tensor:
    """(B, *shape, t) in the IR's order → time-major stored (t, B, *stored): (t, B, H, W, C)
    for a (C, H, W) shape, else (t, B, *shape); a contiguous copy."""
    order = (x.ndim - 1, 0, 2, 3, 1) if x.ndim == 5 else (x.ndim - 1,) + tuple(range(x.ndim - 1))
    return x.permute(order).contiguous()


def _record(spikes: torch.Tensor, out: torch.Tensor) -> None:
    """Copy stored spikes (t, B, *stored) into ``out`` (B, *shape, t), the IR's order
    (the inverse of :func:`_stored`)."""
    order = (1, 4, 2, 3, 0) if spikes.ndim == 5 else tuple(range(1, spikes.ndim)) + (0,)
    out.copy_(spikes.permute(order))


def _chain_source_shape(net: Network, i: int) -> tuple:
    """Shape of the population layer ``i`` reads along the chain (through a flatten layer)."""
    previous = net.layers[i - 1]
    return tuple(previous.in_shape if isinstance(previous, FlattenLayer) else previous.out_shape)


def _hwc_source(layer, source_shape: tuple) -> Optional[tuple]:
    """For a dense synapse reading a stored-channels-last (C, H, W) population, that shape."""
    return tuple(source_shape) if isinstance(layer, DenseLayer) and len(source_shape) == 3 else None
