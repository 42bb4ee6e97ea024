"""A spiking network with skip connections that runs with the chip's timing.

:class:`ConvertedNetwork` is a :class:`~snn2loihi.blocks.network.SpikingNetwork` of our
soft-reset blocks in which a block may also own a :class:`SkipSynapse` (``block.skip``): a
second synapse group reading the spikes of an earlier block, summed into the block's
neurons. :func:`snn2loihi.quantize.quantize_network` exports it (skips become
:class:`snn2loihi.ir.Skip`, ``neuron.v_init`` becomes the layer's ``v_init``).

Timing (``timing="device"``, the default) is Loihi's, so that in float64 with
``fixed_point=True`` every block's spikes equal the emulator's and Lava's, step for step:
every synapse group delivers at step t what its source emitted at t-1, biases act from
step 0, each sample starts from ``v_init``. Input: (N, *input_shape, T_run) spikes, normally
``pad_time(spikes, latency)``; output (N, F, T_run).

``timing="aligned"`` runs every block only over its own window of T steps (block at depth
d: device steps d .. d+T-1), skipping the conv work on the empty steps: the block's neurons
first integrate d steps of bias alone, exactly as on the chip. It gives the same spikes
inside every window as device timing provided that no block has a skip from farther back
than the block before it (such a skip's source is fewer steps away than the chain) and no
block fires before its window; both are checked. Input (N, *input_shape, T), output (N, F, T).

A **hold** of h steps (``hold=h``, with the window T) delays every block's firing: the block
at depth d receives its input from device step ``d + (d-1)·h`` on but may spike only at
steps ``d·(h+1) <= t < d·(h+1) + T`` (its ``fire_window``, exported to the chip). Its
neurons first integrate h steps of input without firing, so a spike is decided on the
charge of h + 1 steps instead of one: the early, uneven part of the input (a neuron
driven past threshold before its inhibitory inputs arrive) no longer turns into spikes
that a later negative charge cannot take back. With h ≥ T a neuron has seen all of its
input before it fires and its count is exactly ``clip(⌈(u0 + charge)/θ⌉ - 1, 0, T)`` (the
rounded charge for u0 = θ/2): no
deviation error at all (research notes §4.3). The price is latency, ``d·(h+1)`` steps
to depth d instead of d; spikes and synaptic operations do not grow (related: the
pre-charged membrane and delayed evaluation of Hwang et al., Front. Neurosci. 2021).

**Counts suffice with h ≥ T** (:meth:`ConvertedNetwork.count_forward`). Then every block
fires its N spikes at the first N steps of its window, and what it sends on is fixed by N
alone: the charge of the next block is ``W·N`` whatever the order in which the spikes
came. The network then runs on one frame of counts per block instead of T + h steps, which
is what a whole test set needs (about T times less convolution). In fixed point it equals
the step-by-step run exactly wherever no partial sum of a block's input can have taken v
past the 24-bit range: :func:`held_counts` bounds them (statically, then with |W|, then
with the exact partial sums of its sources' front-loaded trains); where none of these rules
a clip out, :meth:`count_forward` steps that block alone over the 2T + 1 steps around its
window on those trains (:func:`held_steps`).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Optional, Sequence

import torch
from lava.lib.dl.slayer.block import base
from lava.lib.dl.slayer.synapse import layer as slayer_synapse

from ..blocks.network import SpikingNetwork
from ..ir import DECAY_UNITY
from ..quantize import group_quantizer
from ..sim.synapses import shift_one_step
from .errors import ConversionError

TIMINGS = ("device", "aligned")


class SkipSynapse(torch.nn.Module):
    """A second synapse group of a block: ``a += synapse(s_source)``.

    Args:
        source: index (in ``ConvertedNetwork.blocks``) of the block whose spikes it reads:
            an earlier block, or the block right before (a layer's coarse weight group, see
            :mod:`~.build`).
        synapse: a slayer ``synapse.Conv`` or ``synapse.Dense`` (a (C, H, W) source is
            flattened in C order for a dense skip).
        weight_exp: the group's weight exponent e: in fixed point its weights lie on the
            block's grid coarsened 2^e times (:func:`snn2loihi.quantize.quantize_group`).
    """

    def __init__(self, source: int, synapse: torch.nn.Module, weight_exp: int = 0):
        super().__init__()
        self.source = int(source)
        self.synapse = synapse
        self.weight_exp = int(weight_exp)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Weighted input (N, *out, T) for spikes ``s`` (N, *source_shape, T)."""
        if isinstance(self.synapse, slayer_synapse.Dense) and s.dim() == 5:
            s = s.reshape(s.shape[0], -1, s.shape[-1])
        return self.synapse(s)


def synaptic_input(block, s: torch.Tensor, skip_spikes: Optional[torch.Tensor]) -> torch.Tensor:
    """The weighted spikes a block's neurons receive per step, its synapse plus its skip
    group (N, *out, T); no delay, no bias steps."""
    a = block.synapse(s)
    skip = getattr(block, "skip", None)
    return a if skip is None else a + skip(skip_spikes)


def held_counts(block, counts: torch.Tensor, skip_counts: Optional[torch.Tensor], timesteps: int,
                factor: Optional[torch.Tensor] = None, starts: Optional[tuple] = None,
                window: Optional[int] = None) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(spike counts, input charge a), both (N, *out), of a block with a hold of at least the
    sources' window of ``timesteps`` steps, whose sources sent ``counts`` (N, *in) and
    ``skip_counts`` spikes (module doc): ``a = W·counts (+ W_skip·skip_counts)``, times the
    per-channel ``factor`` (C,) if given. The block fires over its own ``window`` of steps
    (default ``timesteps``; longer for a readout layer, :class:`ConvertedNetwork`).

    In fixed point :meth:`~snn2loihi.neuron.soft_lif.Neuron.window_count` must rule out a
    24-bit clip on the way, with bounds on every partial sum of the input. Three bounds,
    each tried where the one before does not settle it:

    1. static, per channel: ``T·ΣW⁺``, ``T·ΣW⁻`` (no source sends more than T spikes);
    2. order-free, per neuron: ``W⁺·N``, ``W⁻·N`` from a pass with |W|;
    3. exact, where ``starts`` gives the device step at which each source's firing window
       opens (held sources fire front-loaded, :func:`front_loaded`; None for a source whose
       order is not known, such as rate-coded input): the partial sums
       ``P(t) = Σ_src W_src·clip(t - start_src + 1, 0, N_src)`` over every step t at which
       a source fires, with one step's current ``ΣW⁺``, ``ΣW⁻`` added as a floor.

    None where a clip cannot be ruled out."""
    window = timesteps if window is None else window
    frames = [counts.unsqueeze(-1), None if skip_counts is None else skip_counts.unsqueeze(-1)]
    a = synaptic_input(block, *frames)[..., 0]
    scale = 1.0 if factor is None else factor.to(a.dtype).reshape((1, -1) + (1,) * (a.dim() - 2))
    a = a * scale
    if not block.neuron.fixed_point:
        return block.neuron.window_count(a, window), a
    synapses = [block.synapse] + ([block.skip.synapse] if getattr(block, "skip", None) is not None else [])
    weights = [s.weight if s.pre_hook_fx is None else s.pre_hook_fx(s.weight) for s in synapses]
    per_channel = (1, -1) + (1,) * (a.dim() - 2)
    step = [sum(part(w).flatten(1).sum(1) for w in weights).reshape(per_channel) * scale
            for part in (lambda w: w.clamp(min=0), lambda w: (-w).clamp(min=0))]
    n = block.neuron.window_count(a, window, tuple(timesteps * b for b in step))
    if n is None:
        with ExitStack() as stack:
            for synapse in synapses:
                stack.enter_context(absolute_weights(synapse))
            reach = synaptic_input(block, *frames)[..., 0] * scale
        n = block.neuron.window_count(a, window, ((reach + a) / 2, (reach - a) / 2))
    if n is None and starts is not None and None not in starts[:len(synapses)]:
        low, high = partial_sum_range(block, [counts, skip_counts], starts, timesteps)
        n = block.neuron.window_count(a, window, (torch.maximum(high * scale, step[0]),
                                                     torch.maximum(-low * scale, step[1])))
    return None if n is None else (n, a)


def partial_sum_range(block, counts: list, starts: tuple, timesteps: int,
                      chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the device steps t of ``P(t) = Σ_src W_src·clip(t - start_src + 1, 0,
    N_src)``, the input a held block has gathered by step t when its sources (main synapse,
    then skip) fired ``counts`` front-loaded from ``starts``; both (N, *out), P = 0 included.
    Only steps at which a source fires change P; they run ``chunk`` at a time."""
    steps = sorted({s + k for c, s in zip(counts, starts) if c is not None for k in range(timesteps)})
    low = high = None
    for i in range(0, len(steps), chunk):
        t = torch.tensor(steps[i:i + chunk], dtype=counts[0].dtype, device=counts[0].device)
        frames = [None if c is None else (t - start + 1).clamp(min=0).minimum(c.unsqueeze(-1))
                  for c, start in zip(counts, starts)]
        p = synaptic_input(block, *frames)
        low = p.amin(-1) if low is None else torch.minimum(low, p.amin(-1))
        high = p.amax(-1) if high is None else torch.maximum(high, p.amax(-1))
    zero = torch.zeros_like(low)
    return torch.minimum(low, zero), torch.maximum(high, zero)


def held_steps(block, counts: list, starts: tuple, first: int, window: int,
               factor: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, slice]:
    """(spikes, neuron input a, firing window on their time axis) of one held block stepped
    through time on the trains its held sources' ``counts`` (main synapse, then skip or
    None) stand for: each fires front-loaded from its window's device step in ``starts``
    (:func:`front_loaded`). The exact fallback where :func:`held_counts` cannot rule out a
    24-bit clip: the neuron clamps v step by step as on the chip.

    Only the steps from the first source's window to the end of the block's own window
    (opening at device step ``first``, ``window`` steps) are run: nothing reaches the block
    before, and its integrate-and-fire neurons without bias current hold ``v_init`` until
    then. About 2T + 1 steps instead of the whole run; ``factor`` (C,) scales a per channel."""
    t0 = min(start for c, start in zip(counts, starts) if c is not None)
    steps = first + window - t0
    trains = [None if c is None else front_loaded(c, start - t0, steps).to(c.dtype) for c, start in zip(counts, starts)]
    a = layer_input(block, trains[0], trains[1], "device", 0)
    if factor is not None:
        a = a * factor.to(a.dtype).reshape((1, -1) + (1,) * (a.dim() - 2))
    span = slice(first - t0, steps)
    block.neuron.fire_window = (span.start, span.stop)
    return block.neuron(a), a, span


def front_loaded(counts: torch.Tensor, first: int, steps: int) -> torch.Tensor:
    """The spike trains (N, ..., steps) of held blocks (hold ≥ window) that sent ``counts``
    (N, ...): all charge is in when the window opens at step ``first``, so a block fires
    its N spikes at steps ``first .. first + N - 1``."""
    t = torch.arange(steps, device=counts.device) - first
    return (t >= 0) & (t < counts.unsqueeze(-1))


def layer_input(block, s: torch.Tensor, skip_spikes: Optional[torch.Tensor], timing: str, lead: int,
                trail: int = 0) -> torch.Tensor:
    """Everything a block's neurons receive per step, (N, *out, steps): its synapse (plus
    skip) output, shifted by the one-step synaptic delay in device timing; in aligned timing
    preceded by ``lead`` and followed by ``trail`` bias-only steps (:func:`aligned_frame`)."""
    a = synaptic_input(block, s, skip_spikes)
    if timing == "device":  # the synapse output arrives one step later; the bias acts from step 0
        return torch.cat([bias_steps(block, a, 1), shift_one_step(a)[..., 1:]], dim=-1)
    parts = [bias_steps(block, a, lead)] * bool(lead) + [a] + [bias_steps(block, a, trail)] * bool(trail)
    return torch.cat(parts, dim=-1) if len(parts) > 1 else a


def fire_start(depth: int, hold: int) -> int:
    """The device step at which the firing window of a block at ``depth`` opens (its
    latency): one step per synapse hop, plus the hold of each layer."""
    return depth * (hold + 1)


def device_padding(latency: int, timesteps: Optional[int], readout: Optional[int]) -> int:
    """Silent steps to append to T input steps in device timing so that a run covers the
    output's whole window: the latency, plus R - T with a readout window of R steps (no
    window without a hold: ``timesteps = readout = None``)."""
    return latency + (readout or 0) - (timesteps or 0)


def aligned_frame(block, depth: int, hold: int) -> tuple[int, int]:
    """(lead, first) of a block at ``depth`` in aligned timing with a hold of ``hold`` steps:
    the bias-only steps before its input arrives (device steps ``0 .. d + (d-1)·h - 1``)
    and the frame step at which its firing window opens (``lead + hold``). With a hold, the
    lead is left out where it cannot change the state (no bias, no voltage leak): deep
    blocks would otherwise integrate hundreds of empty steps."""
    lead = depth + (depth - 1) * hold if depth else 0
    if hold and getattr(block.synapse, "bias", None) is None and float(block.neuron.voltage_decay) == 0:
        lead = 0
    return lead, lead + hold


def neuron_input(block, s: torch.Tensor, skip_spikes: Optional[torch.Tensor], timing: str, depth: int,
                 hold: int = 0, timesteps: Optional[int] = None,
                 window: Optional[int] = None) -> tuple[torch.Tensor, slice]:
    """(everything the neurons of a block at ``depth`` receive, its window on that input's
    time axis), with the neuron's firing window of ``window`` steps (default ``timesteps``,
    the sources' window) set for that input when there is a ``hold`` (module doc). The
    window runs to the end of the input without a hold."""
    window = timesteps if window is None else window
    if timing == "device":
        first = fire_start(depth, hold)
        a = layer_input(block, s, skip_spikes, timing, 0)
    else:
        lead, first = aligned_frame(block, depth, hold)
        a = layer_input(block, s, skip_spikes, timing, lead, hold + (window or 0) - (timesteps or 0))
    span = slice(first, first + window if hold else None)
    block.neuron.fire_window = (span.start, span.stop) if hold else None
    return a, span


@contextmanager
def absolute_weights(synapse: torch.nn.Module):
    """Within the block, ``synapse`` applies |W| (of its quantized weights in fixed point)."""
    hook = synapse.pre_hook_fx
    synapse.pre_hook_fx = torch.abs if hook is None else (lambda w: hook(w).abs())
    try:
        yield
    finally:
        synapse.pre_hook_fx = hook


def bias_steps(block, like: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` steps of input with no spike arriving: the synapse bias alone. (N, *out, steps)."""
    out = torch.zeros(like.shape[:-1] + (steps,), dtype=like.dtype, device=like.device)
    bias = getattr(block.synapse, "bias", None)
    if bias is not None:
        out = out + bias.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 2))
    return out


def window(s: torch.Tensor, span: slice, timing: str) -> torch.Tensor:
    """The spikes later blocks see: all steps in device timing; in aligned timing the
    block's window ``span`` (:func:`neuron_input`), after checking that it was silent
    before it."""
    if timing == "device":
        return s
    if bool(s[..., :span.start].any()):
        raise ConversionError("a block fires before its input arrives: aligned timing would drop those "
                              "spikes; use timing='device'")
    return s[..., span]


class ConvertedNetwork(SpikingNetwork):
    """Soft-reset IF blocks with optional skip synapses, simulated with the chip's timing.

    Args:
        input_shape: (C, H, W) or (F,).
        blocks: the blocks after the input (Conv, Pool, Flatten, Dense of
            :mod:`snn2loihi.blocks.soft_lif`).
        skips: block index (counting the input block as 0) → :class:`SkipSynapse`.
        hold: h, the steps each block integrates before its firing window opens (module
            doc); 0: none.
        timesteps: T, the length of every firing window (needed with a hold).
        readout: R ≥ T, the length of the last block's firing window (default T). With
            R > T (which needs h ≥ T: the output holds all of its charge when its window
            opens) the output neurons read that charge out at R/T times T's resolution:
            ``N = clip(⌈charge/θ⌉ - 1, 0, R)`` for a threshold θ that the converter sets
            R/T times lower, so that ``θ·N/T`` estimates the activation in steps of θ/R,
            with fewer tied classes (docs/residual.md). Input spikes and the spikes of
            every other block are unchanged; the run is R - T steps longer
            (:attr:`padding`).
    """

    def __init__(self, input_shape: Sequence[int], blocks: Sequence[torch.nn.Module],
                 skips: Optional[dict] = None, hold: int = 0, timesteps: Optional[int] = None,
                 readout: Optional[int] = None):
        super().__init__(input_shape, blocks)
        if hold < 0 or (hold and not timesteps or timesteps is not None and timesteps < 1):
            raise ConversionError(f"a hold needs hold >= 0 and a window of timesteps >= 1 "
                                  f"(got hold={hold}, timesteps={timesteps})")
        if readout is not None and readout != timesteps and (timesteps is None or readout < timesteps
                                                             or hold < timesteps):
            raise ConversionError(f"a readout window needs readout >= timesteps and a hold >= timesteps (the "
                                  f"output must hold all of its charge when it opens); got readout={readout}, "
                                  f"timesteps={timesteps}, hold={hold}")
        self.hold, self.timesteps = int(hold), timesteps
        self.readout = timesteps if readout is None else int(readout)
        for index, skip in (skips or {}).items():
            block = self.blocks[index]
            if not isinstance(block, (base.AbstractConv, base.AbstractDense)) or not 0 < skip.source < index:
                raise ConversionError(f"block {index}: a skip needs a conv/dense block and an earlier source")
            block.skip = skip
        self.depths = []  #: synapse hops from the input to each block (its window starts there)
        depth = 0
        for block in self.blocks:
            depth += int(hasattr(block, "synapse"))
            self.depths.append(depth)
        #: index of the last block with synapses (the one with the readout window)
        self.output_block = max(i for i, block in enumerate(self.blocks) if hasattr(block, "synapse"))
        for i, block in enumerate(self.blocks):
            if self.hold and hasattr(block, "synapse"):
                #: The block's firing window in device steps of a sample (exported as the
                #: layer's ``fire_window``).
                start = fire_start(self.depths[i], self.hold)
                block.fire_window = (start, start + self.window_length(i))

    def window_length(self, index: int) -> Optional[int]:
        """Steps of block ``index``'s firing window: R for the output block, else T."""
        return self.readout if index == self.output_block else self.timesteps

    @property
    def latency(self) -> int:
        """Steps from an input to the last block's response (one per synapse layer, plus
        the hold of each)."""
        return fire_start(self.depths[-1], self.hold)

    @property
    def padding(self) -> int:
        """Silent steps to append to T input steps in device timing so that the run covers
        the output's whole window: the latency, plus R - T with a readout window."""
        return device_padding(self.latency, self.timesteps, self.readout)

    @property
    def has_skips(self) -> bool:
        """Whether a skip reads a block other than the synapse block right before its own
        (a skip from that block keeps the network a chain: aligned timing stays exact)."""
        return any(self.depths[b.skip.source] != self.depths[i] - 1
                   for i, b in enumerate(self.blocks) if getattr(b, "skip", None) is not None)

    def forward(self, x: torch.Tensor, record: bool = False, timing: str = "device"):
        """Spikes of the last block (N, F, T); with ``record=True`` also a list with every
        block's output (the input and flatten blocks included, as in SpikingNetwork)."""
        if timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, found {timing!r}")
        if timing == "aligned" and self.has_skips:
            raise ConversionError("aligned timing is exact only without skips; use timing='device'")
        needed = {b.skip.source for b in self.blocks if getattr(b, "skip", None) is not None}
        outputs: list = []
        for i, block in enumerate(self.blocks):
            if hasattr(block, "synapse"):
                skip = getattr(block, "skip", None)
                a, span = neuron_input(block, x, None if skip is None else outputs[skip.source], timing,
                                       self.depths[i], self.hold, self.timesteps, self.window_length(i))
                x = window(block.neuron(a), span, timing)
            else:
                x = block(x)
            outputs.append(x if record or i in needed else None)
        return (x, outputs) if record else x

    @property
    def collapsible(self) -> bool:
        """Whether spike counts alone determine every block's output (module doc): a hold
        h ≥ T, soft-reset integrate-and-fire neurons and no bias current (a held layer's
        bias is in its ``v_init``)."""
        neurons = [b.neuron for b in self.blocks if hasattr(b, "synapse")]
        return (self.hold > 0 and self.hold >= self.timesteps
                and all(b.synapse.bias is None for b in self.blocks if hasattr(b, "synapse"))
                and all(n.reset == "soft" and n.cx_current_decay == DECAY_UNITY and n.cx_voltage_decay == 0
                        for n in neurons))

    @torch.no_grad()
    def count_forward(self, counts: torch.Tensor, record: bool = False):
        """Output spike counts (N, F) for input spike counts (N, *input_shape) over the T-step
        input window, without stepping through time (needs :attr:`collapsible`).

        Each block's neurons open their window holding ``v_init + W·N_in`` (skip group
        included) and fire :meth:`~snn2loihi.neuron.soft_lif.Neuron.window_count` spikes.
        In fixed point, a block whose state might have reached the 24-bit limit
        (:func:`held_counts` cannot rule it out) is stepped alone on the trains its sources'
        counts stand for (:func:`held_steps`, exact with the clamp); where such a block reads
        the rate-coded input, whose spike order counts do not give, this returns None (then
        use ``forward``).
        With ``record=True`` also a list with every block's counts, (N, *shape).
        """
        if not self.collapsible:
            raise ConversionError("count_forward needs a hold of at least the window (hold >= timesteps) "
                                  "and integrate-and-fire neurons without bias currents")
        needed = {b.skip.source for b in self.blocks if getattr(b, "skip", None) is not None}
        outputs: list = []
        for i, block in enumerate(self.blocks):
            if hasattr(block, "synapse"):
                skip = getattr(block, "skip", None)
                sources = (i - 1, None if skip is None else skip.source)
                starts = tuple(None if src is None or not self.depths[src] else fire_start(self.depths[src], self.hold)
                               for src in sources)
                frames = [counts, None if skip is None else outputs[skip.source]]
                held = held_counts(block, *frames, self.timesteps, starts=starts, window=self.window_length(i))
                if held is not None:
                    counts = held[0]
                elif None in starts[:1 + (skip is not None)]:  # rate-coded input: its order is not known
                    return None
                else:
                    counts = held_steps(block, frames, starts, fire_start(self.depths[i], self.hold),
                                        self.window_length(i))[0].sum(-1)
            else:
                counts = block(counts.unsqueeze(-1))[..., 0]
            outputs.append(counts if record or i in needed else None)
        return (counts, outputs) if record else counts

    def set_fixed_point(self, enabled: bool) -> None:
        """Chip arithmetic (True) or unquantized weights (False), skip synapses included.
        Biases and initial voltages stay on the chip's grid either way."""
        super().set_fixed_point(enabled)
        for block in self.blocks:
            skip = getattr(block, "skip", None)
            if skip is not None:
                skip.synapse.pre_hook_fx = group_quantizer(block.neuron, skip.weight_exp) if enabled else None
