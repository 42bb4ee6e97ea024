"""Float network → Loihi integers, with a report of every rounding, clip and saturation risk.

For a block with weight scale ``s`` (the neuron's ``scale``, 64 = weight exponent 0):

- weights: ``W = clamp(2·round(w·s/2), -256, 254)``, slayer's 8-bit grid (netx later
  splits W into an 8-bit mantissa and a shared exponent with ``optimize_weight_bits``);
- decays: ``iDecay = round(4096·current_decay)``, ``vDecay = round(4096·voltage_decay)``;
- threshold: ``vThMant = θ·s`` (exact: the neuron already keeps θ on the 1/s grid);
- initial voltage: ``v_init = round(v0·s·64)`` raw v units (the neuron's ``v_init``);
- a block's ``skip`` (``source`` layer index + a slayer ``synapse``, see
  :mod:`snn2loihi.conversion.network`) becomes an :class:`~snn2loihi.ir.Skip` whose weights
  take the block's grid coarsened by the skip's ``weight_exp`` e (``2^e`` times the step
  and the range, :func:`quantize_group`);
- a block's ``fire_window`` (device steps, set by a converted network's hold) becomes the
  layer's ``fire_window``;
- states: u, v are 24-bit; the report gives the largest synaptic input a layer can
  receive in one step (``Σ|W|`` over a neuron's inputs, ``<< 6``) against 2^23.

Clipping and rounding are reported per layer; a value that cannot be represented at all
(threshold mantissa above 17 bits, a non-positive threshold) raises
:class:`QuantizationError` instead of wrapping.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from lava.lib.dl.slayer.block import base
from lava.lib.dl.slayer.utils import quantize as slayer_quantize
from lava.lib.dl.slayer.synapse import layer as slayer_synapse

from . import ir
from .errors import QuantizationError
from .neuron.fixed_point import ACT_SHIFT, STATE_LIMIT


@dataclass
class LayerQuantization:
    """What quantizing one layer did.

    Attributes:
        name: "index:type".
        weights: number of weights.
        weights_clipped: weights beyond [-256, 254]/scale, clamped.
        weights_rounded: weights moved by rounding to the 2/scale grid.
        max_rounding_error: largest |w - W/scale| among unclipped weights (slayer units).
        zero_weights: weights that became 0.
        decays: {"iDecay": (float·4096, int), "vDecay": (...)}.
        threshold: (θ, vThMant).
        max_input_per_step: largest possible |a_in << 6| of one neuron in one step.
        may_saturate: max_input_per_step exceeds the 24-bit state range.
    """

    name: str
    weights: int = 0
    weights_clipped: int = 0
    weights_rounded: int = 0
    max_rounding_error: float = 0.0
    zero_weights: int = 0
    decays: dict = field(default_factory=dict)
    threshold: tuple = ()
    max_input_per_step: int = 0
    may_saturate: bool = False


@dataclass
class QuantizationReport:
    """Per-layer :class:`LayerQuantization` records."""

    layers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"layers": [asdict(layer) for layer in self.layers]}

    def summary(self) -> str:
        """One line per layer."""
        lines = []
        for q in self.layers:
            if not q.weights:
                continue
            warn = "  MAY SATURATE 24-bit u" if q.may_saturate else ""
            lines.append(f"{q.name}: {q.weights} weights, {q.weights_clipped} clipped, "
                         f"{q.weights_rounded} rounded (max err {q.max_rounding_error:.4g}), "
                         f"{q.zero_weights} zero; vThMant {q.threshold[1] if q.threshold else '-'}{warn}")
        return "\n".join(lines)


def quantize_network(model) -> tuple[ir.Network, QuantizationReport]:
    """Convert a :class:`~snn2loihi.blocks.network.SpikingNetwork` to a fixed-point
    :class:`~snn2loihi.ir.Network` and report what quantization changed.

    Raises:
        QuantizationError: a parameter cannot be represented on the chip.
    """
    report = QuantizationReport()
    layers = [block_to_layer(block, f"{i}:{type(block).__name__.lower()}", report)
              for i, block in enumerate(model.blocks)]
    try:
        return ir.Network(layers, source=type(model).__name__), report
    except ValueError as err:
        raise QuantizationError(f"the quantized network is inconsistent: {err}") from None


def export_block(block, handle) -> None:
    """Write one block as a netx layer into the h5py group ``handle``."""
    from .netx.writer import write_layer

    write_layer(handle, block_to_layer(block, type(block).__name__.lower(), QuantizationReport()))


def block_to_layer(block, name: str, report: QuantizationReport):
    """The :mod:`snn2loihi.ir` layer of one block; appends its record to ``report``."""
    in_shape = getattr(block, "snn2loihi_in_shape", None)
    if in_shape is None:
        raise QuantizationError(f"{name}: input shape unknown; build blocks inside a SpikingNetwork")
    record = LayerQuantization(name)
    report.layers.append(record)
    if hasattr(block, "deployable"):
        # Training-time blocks (batch norm, NeuNorm, ...) name the plain block they deploy
        # as (or raise QuantizationError when they have none).
        block = block.deployable()
    if isinstance(block, base.AbstractInput):
        return ir.InputLayer(in_shape)
    if isinstance(block, base.AbstractFlatten):
        return ir.FlattenLayer(in_shape)
    neuron = _neuron_spec(block.neuron, record)
    weight = _weights(block, record)
    syn = block.synapse
    bias = _bias(block, record)
    v_init = _v_init(block.neuron, record)
    skip = _skip(block, record)
    window = getattr(block, "fire_window", None)  # device steps (a converted network's hold)
    try:
        if isinstance(block, base.AbstractDense):
            layer = ir.DenseLayer(weight.reshape(weight.shape[0], -1), neuron, bias=bias, skip=skip, v_init=v_init,
                                  fire_window=window)
        elif isinstance(block, base.AbstractConv):
            layer = ir.ConvLayer(in_shape, weight[..., 0], neuron, stride=syn.stride[:2], padding=syn.padding[:2],
                                 dilation=syn.dilation[:2], groups=syn.groups, bias=bias, skip=skip, v_init=v_init,
                                 fire_window=window)
        elif isinstance(block, base.AbstractPool) and skip is None:
            layer = ir.PoolLayer(in_shape, weight.reshape(weight.shape[2:4]), neuron, stride=syn.stride[:2],
                                 padding=syn.padding[:2], dilation=syn.dilation[:2], v_init=v_init,
                                 fire_window=window)
        else:
            raise QuantizationError(f"{name}: block type {type(block).__name__} cannot be exported"
                                    + (" with a skip" if skip is not None else ""))
    except ValueError as err:
        raise QuantizationError(f"{name}: {err}") from None
    record.max_input_per_step = _max_input(layer) << ACT_SHIFT
    record.may_saturate = record.max_input_per_step >= STATE_LIMIT
    return layer


def quantize_group(weight: torch.Tensor, w_scale: int, weight_exp: int = 0, descale: bool = False) -> torch.Tensor:
    """Weights of a synapse group with exponent e on the grid of a neuron of weight scale s:
    ``clamp(round(w / step)·step, -256·2^e/s, 254·2^e/s)`` with ``step = 2^(e+1)/s``
    (``· s`` with ``descale``: the integers the group delivers, mantissa · 2^e). With e = 0
    this is slayer's ``quantize_8bit``, operation for operation; a larger e trades
    resolution for range (a relay's one threshold fits at any s ≤ 127·2^(e+1)). Shapes:
    any; ``weight`` in threshold units."""
    unit = float(1 << weight_exp)
    q = slayer_quantize(weight, step=2 * unit / w_scale).clamp(-256 * unit / w_scale, 254 * unit / w_scale)
    return q * w_scale if descale else q


def group_quantizer(neuron, weight_exp: int):
    """A slayer ``pre_hook_fx`` putting a group's weights on ``neuron``'s grid with exponent
    ``weight_exp`` (:func:`quantize_group`)."""
    return lambda weight: quantize_group(weight, neuron.w_scale, weight_exp)


def _weights(block, record: LayerQuantization, synapse=None, weight_exp: int = 0) -> np.ndarray:
    """Integer weight mantissas of the block's synapse (or of ``synapse``, e.g. its skip with
    exponent ``weight_exp``, on the block neuron's grid); the counts in ``record`` add up
    over both."""
    neuron, syn = block.neuron, (block.synapse if synapse is None else synapse)
    scale = neuron.w_scale
    unit = 1 << weight_exp
    with torch.no_grad():
        w = syn.weight.detach().double().cpu()
        if getattr(syn, "weight_norm_enabled", False):
            raise QuantizationError(f"{record.name}: disable weight norm before quantizing")
        q = quantize_group(w, scale, weight_exp, descale=True).numpy()
    scaled = w.numpy() * scale
    clipped = (scaled > 254 * unit) | (scaled < -256 * unit)
    record.weights += int(q.size)
    record.weights_clipped += int(clipped.sum())
    error = np.abs(scaled - q)[~clipped] / scale
    record.weights_rounded += int((error > 1e-12).sum())
    record.max_rounding_error = max(record.max_rounding_error, float(error.max(initial=0.0)))
    record.zero_weights += int((q == 0).sum())
    return np.rint(q).astype(np.int64) >> weight_exp


def _v_init(neuron, record: LayerQuantization):
    """Raw initial voltages ``round(v0 · s_scale)`` (the neuron's ``v_init``), or None."""
    v0 = getattr(neuron, "v_init", None)
    if v0 is None:
        return None
    raw = np.rint(v0.detach().double().cpu().numpy().reshape(-1) * neuron.s_scale).astype(np.int64)
    if np.abs(raw).max(initial=0) >= STATE_LIMIT:
        raise QuantizationError(f"{record.name}: initial voltage {int(np.abs(raw).max())} exceeds the 24-bit v")
    return raw


def _skip(block, record: LayerQuantization):
    """The block's ``skip`` (``.source``, ``.synapse``) as an :class:`ir.Skip`, or None."""
    skip = getattr(block, "skip", None)
    if skip is None:
        return None
    exp = getattr(skip, "weight_exp", 0)
    weight = _weights(block, record, skip.synapse, exp)
    if isinstance(skip.synapse, slayer_synapse.Dense):
        return ir.Skip(skip.source, weight.reshape(weight.shape[0], -1), weight_exp=exp)
    syn = skip.synapse
    return ir.Skip(skip.source, weight[..., 0], stride=syn.stride[:2], padding=syn.padding[:2],
                   dilation=syn.dilation[:2], groups=syn.groups, weight_exp=exp)


def _bias(block, record: LayerQuantization):
    """Bias mantissas ``round(b · scale)`` of a synapse bias (a constant current per step,
    slayer units), or None. Loihi adds ``bias << 6`` to v each step, which equals adding b
    to the synaptic current when the neuron keeps no current (current_decay = 1)."""
    bias = getattr(block.synapse, "bias", None)
    if bias is None:
        return None
    neuron = block.neuron
    if neuron.cx_current_decay != ir.DECAY_UNITY:
        raise QuantizationError(f"{record.name}: a synapse bias deploys only with current_decay = 1 "
                                f"(Loihi adds the bias to v, not to u)")
    mant = np.rint(bias.detach().double().cpu().numpy().reshape(-1) * neuron.w_scale).astype(np.int64)
    if np.abs(mant).max(initial=0) > 4095:
        raise QuantizationError(f"{record.name}: bias mantissa {int(np.abs(mant).max())} exceeds the 13-bit "
                                f"range ±4095")
    return mant


def _neuron_spec(neuron, record: LayerQuantization) -> ir.NeuronSpec:
    params = neuron.device_params
    record.decays = {"iDecay": (float(neuron.current_decay.detach().reshape(-1)[0]), int(params["iDecay"])),
                     "vDecay": (float(neuron.voltage_decay.detach().reshape(-1)[0]), int(params["vDecay"]))}
    record.threshold = (float(neuron.threshold), int(params["vThMant"]))
    try:
        return ir.NeuronSpec(kind=params["type"], i_decay=int(params["iDecay"]), v_decay=int(params["vDecay"]),
                             vth_mant=int(params["vThMant"]), ref_delay=int(params["refDelay"]),
                             graded_spike=bool(params["gradedSpike"]))
    except ValueError as err:
        raise QuantizationError(f"{record.name}: {err}") from None


def _max_input(layer) -> int:
    """Largest ``Σ|W|`` over one neuron's inputs (binary spikes, all presynaptic firing)."""
    w = np.abs(layer.weight)
    if isinstance(layer, ir.DenseLayer):
        return int(w.sum(axis=1).max(initial=0))
    if isinstance(layer, ir.ConvLayer):
        return int(w.reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
    return int(w.sum())
