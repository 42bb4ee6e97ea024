"""A trainable classifier around the deployable spiking network, and its chip-side twin.

``SNNClassifier`` = optional host :class:`~snn2loihi.training.modules.Encoder` → a
:class:`~snn2loihi.blocks.network.SpikingNetwork` (what runs on Loihi) → class scores:

- ``readout`` output (last block a :class:`~snn2loihi.training.modules.Readout`): the output
  is the current O(t), (N, C, T); scores ``Σ_t O(t)`` (what the readout neuron integrates).
- ``spikes`` output: the last block spikes, (N, C·M, T); scores are spike counts summed over
  each class's group of M voting neurons (M = 1: one neuron per class).

Prediction is the arg-max of the scores, ties to the lowest class. :meth:`to_ir`,
:meth:`chip_input` and :func:`chip_scores` give the same scores from the exported network.

Timing. ``timing="aligned"`` (training default) runs every layer over the same T steps,
as if synapses had no delay. On the chip every synapse layer adds one step, so a layer at
depth d receives its first input at step d; that is a pure shift for bias-free networks,
but a bias (folded batch norm) acts from step 0, so such a layer integrates d steps of bias
alone first. ``timing="device"`` simulates exactly that (input padded by the latency L,
each synapse layer's input delayed one step) and returns each output's window of T steps;
in float64 and fixed-point mode its scores equal :func:`chip_scores` exactly, biases
included (aligned timing does so for bias-free networks).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir
from ..blocks.network import SpikingNetwork
from ..blocks.soft_lif import Flatten, Input
from ..data.encoding import pad_time
from ..neuron.soft_lif import Neuron
from ..sim.synapses import shift_one_step
from .modules import Encoder, Readout
from .spec import network_from_spec, network_spec, neuron_kwargs, neuron_spec
from .stbp import NeuNorm

TIMINGS = ("aligned", "device")
#: Modules without a synapse that device timing passes through (no delay of their own).
_UNTIMED = (Input, Flatten, NeuNorm)


def _spiking(block) -> bool:
    return getattr(block, "neuron", None) is not None and not isinstance(block, Readout)


class SNNClassifier(torch.nn.Module):
    """Encoder (optional) + spiking network + decision rule.

    Args:
        network: the chip part; its input shape is the encoder's output shape (if any).
        num_classes: C.
        encoder: host encoder of analog input; without it the input is spikes (N, ..., T).
        votes: M voting neurons per class for a spiking output (STBP); 1 otherwise.
        timesteps: T used with an encoder (spike input brings its own T).
        timing: ``aligned`` or ``device`` (see the module docstring).

    ``forward(x)`` returns ``(output, spike_rate)``: the output (N, F, T) and the mean firing
    probability per neuron and step over all spiking layers (a scalar tensor).
    """

    def __init__(self, network: SpikingNetwork, num_classes: int, encoder: Optional[Encoder] = None,
                 votes: int = 1, timesteps: int = 8, timing: str = "aligned"):
        super().__init__()
        if timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, found {timing!r}")
        self.timing = timing
        self.network = network
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.votes = int(votes)
        self.timesteps = int(timesteps)
        self.readout = isinstance(network.blocks[-1], Readout)
        features = int(np.prod(network.output_shape))
        if features != self.num_classes * self.votes:
            raise ValueError(f"the network has {features} outputs, expected {self.num_classes} classes × "
                             f"{self.votes} votes")
        if self.readout and self.votes != 1:
            raise ValueError("voting needs a spiking output layer, not a readout")
        if encoder is not None and tuple(encoder.out_shape) != tuple(network.input_shape):
            raise ValueError(f"encoder output {encoder.out_shape} differs from the network input "
                             f"{network.input_shape}")

    @property
    def latency(self) -> int:
        """Synapse layers between input and output: the chip's delay L in steps."""
        return sum(1 for block in self.network.blocks if hasattr(block, "synapse"))

    @property
    def chain(self) -> bool:
        """True when device timing applies: every block is one synapse layer (or untimed)."""
        return all(hasattr(b, "synapse") or isinstance(b, _UNTIMED) for b in self.network.blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.timing == "device"
        if device and not self.chain:
            raise ValueError("device timing needs a chain of synapse layers (no residual blocks)")
        pad = self.latency if device else 0
        rates = []
        if self.encoder is not None:
            x = self.encoder(x, self.timesteps, pad)
            rates.append(x.mean())
        elif pad:
            x = F.pad(x, (0, pad))
        for block in self.network.blocks:
            x = block(shift_one_step(x) if device and hasattr(block, "synapse") else x)
            if _spiking(block):
                rates.append(x.mean())
        rate = torch.stack(rates).mean() if rates else x.new_zeros(())
        return x.reshape(x.shape[0], -1, x.shape[-1])[..., pad:], rate

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """Class scores (N, C) from the output (N, F, T)."""
        total = output.sum(-1)
        return total.reshape(total.shape[0], self.num_classes, self.votes).sum(-1)

    def set_fixed_point(self, enabled: bool) -> None:
        """Chip arithmetic (True) or the ideal float network (False), for every neuron and
        synapse inside (encoder and residual blocks included)."""
        for module in self.modules():
            if isinstance(module, Neuron):
                module.fixed_point = enabled
            neuron, synapse = getattr(module, "neuron", None), getattr(module, "synapse", None)
            if isinstance(neuron, Neuron) and hasattr(synapse, "pre_hook_fx"):
                synapse.pre_hook_fx = neuron.quantize_8bit if enabled else None

    # --- plain-data description -----------------------------------------------------
    def spec(self) -> dict:
        """Architecture as plain data (rebuild with :meth:`from_spec`, then load the state)."""
        enc = None
        if self.encoder is not None:
            e = self.encoder
            syn = e.synapse
            enc = {"neuron": neuron_spec(e.neuron), "in_shape": list(e.in_shape), "batchnorm": e.batchnorm,
                   "out_features": int(syn.out_channels if hasattr(syn, "out_channels") else syn.out_features)}
            if isinstance(syn, torch.nn.Conv2d):
                enc.update(kernel_size=int(syn.kernel_size[0]), stride=int(syn.stride[0]),
                           padding=int(syn.padding[0]))
        return {"network": network_spec(self.network), "encoder": enc, "num_classes": self.num_classes,
                "votes": self.votes, "timesteps": self.timesteps, "timing": self.timing}

    @classmethod
    def from_spec(cls, spec: dict) -> "SNNClassifier":
        encoder = None
        if spec.get("encoder"):
            e = dict(spec["encoder"])
            encoder = Encoder(neuron_kwargs(e.pop("neuron")), **e)
        return cls(network_from_spec(spec["network"]), spec["num_classes"], encoder=encoder,
                   votes=spec.get("votes", 1), timesteps=spec.get("timesteps", 8),
                   timing=spec.get("timing", "aligned"))

    # --- deployment -----------------------------------------------------------------
    def to_ir(self):
        """(fixed-point :class:`~snn2loihi.ir.Network`, quantization report) of the chip part.

        With an encoder, the network's input layer is the encoder's input neurons, driven by
        the integers of :meth:`chip_input`.

        Raises:
            QuantizationError: a block cannot be deployed (NeuNorm, residual, out of range).
        """
        from ..quantize import quantize_network

        net, report = quantize_network(self.network)
        if self.encoder is not None:
            net = ir.Network([self.encoder.input_layer()] + net.layers[1:], source=net.source, notes=net.notes)
        return net, report

    def chip_input(self, x: torch.Tensor | np.ndarray, latency: int) -> np.ndarray:
        """The array a netx file of this model takes, padded by ``latency`` silent steps:
        encoder currents repeated for T steps (N, *shape, T + latency), else the spikes."""
        if self.encoder is None:
            return pad_time(np.asarray(x).astype(np.int64), latency)
        self.encoder.eval()
        weight = self.encoder.synapse.weight
        a = self.encoder.chip_input(torch.as_tensor(np.asarray(x)).to(weight.device, weight.dtype))
        return pad_time(np.repeat(a[..., None], self.timesteps, axis=-1), latency)


def chip_scores(model: SNNClassifier, net: ir.Network, result) -> np.ndarray:
    """Class scores (N, C) of a simulation ``result`` of ``net`` (emulator or Lava, with
    ``record_all`` for a readout model) over the window of T + L steps (L = latency).

    Each layer's window is the T steps from its depth d on. Spiking output: spike counts of
    the last layer (d = L) in its window, per voting group. Readout: what the readout neuron
    integrated over its window, ``Σ_t O(t)`` with ``O(t) = W·s_prev(t)`` from the layer
    feeding it (d = L - 1). The readout's current register u integrates O(t) and wraps at
    24 bits, so a long window (e.g. T = 100 after conversion) can wrap the total although
    no single step does; the host therefore reads u at every step of the window (a
    C-value probe) and sums the increments ``wrap24(u(t) - u(t-1)) = wrap24(O(t))`` in 64
    bits. Computed from the recorded spikes with the chip's own integer synapse
    (:class:`snn2loihi.sim.synapses.Synapse`). (Without biases no layer fires before its
    window, so this equals the whole run.)
    """
    latency = net.latency
    steps = result.output.shape[-1] - latency   # the input's T (spike input brings its own)
    if not model.readout:
        out = result.output[..., latency:latency + steps]
        counts = out.reshape(out.shape[0], -1, out.shape[-1]).sum(-1)
        return counts.reshape(len(counts), model.num_classes, model.votes).sum(-1)
    from ..ir import FlattenLayer
    from ..neuron.fixed_point import ACT_SHIFT
    from ..sim.synapses import Synapse, wrap_signed

    last = len(net.layers) - 1
    source = max(i for i in result.spikes if i < last and not isinstance(net.layers[i], FlattenLayer))
    spikes = torch.as_tensor(result.spikes[source][..., latency - 1:latency - 1 + steps].astype(np.int64))
    n = spikes.shape[0]
    flat = spikes.movedim(-1, 1).reshape((n * steps,) + tuple(spikes.shape[1:-1]))
    current, _ = Synapse(net.layers[last], torch.device("cpu"))(flat)
    increments = wrap_signed(current << ACT_SHIFT) >> ACT_SHIFT
    return increments.reshape(n, steps, -1).sum(1).numpy()
