"""From graph + thresholds to blocks: layers, weight normalisation, weight scale, bias timing.

**Layers.** Every graph node becomes a population of IF neurons; a relay node (block
restructuring) shares the layer of the node before it (channels concatenated). A layer's
operators that read the previous layer form its synapse; those reading one earlier layer
form its skip synapse (at most one).

**Two weight groups** (``docs/residual.md``). A layer's weights span more than 8 bits:
relays and clocks copy spikes with exactly one threshold, shortcuts carry about one, the
first layers have weights of several thresholds, while most conv weights are 0.01 … 0.5.
One 8-bit grid sized for the largest weight rounds the small ones coarsely, and in a deep
ResNet those rounding errors compound. A layer without a skip of its own (from layer 2 on) therefore splits its weights
by magnitude into two synapse groups from the previous layer: the *fine* group (the layer's
own synapse, ``|w|·s ≤ 254``) and a *coarse* group (a skip from the previous layer with
weight exponent e, grid ``2^(e+1)/s``) holding the rest. Loihi gives every synapse group its
own exponent (:class:`snn2loihi.ir.Skip`). The scale s is the power of two that minimises
the layer's summed squared rounding error (:func:`choose_scale`). A relay weight s = 2^k
stays exact (mantissa 2^(k-e)). Both groups read the previous layer, so the network stays a
chain (aligned timing applies).

**Normalisation.** Neurons fire at threshold 1; node n with threshold θ_n (activation
units) is represented by its rate ``r_n = a_n / θ_n``. An operator from node m into node n
gets weights ``W·θ_m/θ_n`` and node n's bias is ``b' = b/θ_n`` per step.

**Weight scale.** Each layer takes a power of two ``s`` (the neuron's ``scale``; threshold
mantissa = s) such that its bias fits the 13-bit mantissa (``≤ 4095``), its initial voltage
the 24-bit v and one step of input the 24-bit u (``Σ|W'|·s·64 < 2^23``). With one weight
group it is the largest such s at which the weights fit the 8-bit grid (``max|W'|·s ≤ 254``);
with two, the one of least rounding error (above).

**Bias timing** (``bias="timed"``; the default, ``"clock"`` of :mod:`~.clock`, has no
cap). Biases are constant currents b' per step, as on the chip, where they act from step 0
although a layer at depth d receives its first input only at step d. With ``u0`` the intended initial voltage (θ/2 with
``v_init="half"``) each channel starts at ``v_init = min(u0 - d·b', 1)``: it reaches u0
exactly when its input arrives and cannot fire before (v ≤ 1 while only bias flows), so
within its window it integrates ``u0 + Σ_t (W'·s_t) + T·b'`` — exactly the ideal
(delay-free) neuron — unless a negative bias needs more than the cap
(``d·|b'| > 1 - u0``): that channel then starts its window ``d·|b'| - (1 - u0)`` thresholds
short (the report counts it in the inherited part). ``bias="current"`` starts every
channel at u0 (the naive conversion: deep layers integrate d steps of bias before their
input, and may fire before it). Biases and initial voltages are put on the chip's grid
(1/s and 1/(64·s)) here, so the float and fixed-point networks integrate the same bias.
With a hold (``convert(hold=h)``) a layer cannot fire before its window, so its whole bias
charge T·b' goes into ``v_init`` and no current flows (no cap needed).

(Front-loading a negative bias into ``v_init`` instead, ``u0 + T·b'`` with no current,
keeps the charge exact but holds the neuron silent at the start of its window; the delayed
spike trains then give the next layers strongly time-varying input, i.e. deviation error.
Measured on a 3-block ResNet at T = 256 it multiplied the output error by ~10, so it is not
offered.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..blocks import synapse
from ..blocks.soft_lif import Conv, Dense
from ..ir import VTH_MAX, WEIGHT_EXP_MAX
from ..quantize import group_quantizer, quantize_group
from .errors import ConversionError
from .graph import Graph
from .network import SkipSynapse

#: 8-bit weight mantissa limit (slayer's even grid), 13-bit bias mantissa, 24-bit states.
WEIGHT_LIMIT, BIAS_LIMIT, STATE_LIMIT = 254, 4095, (1 << 23) - 1
#: Default membrane range a held layer keeps free of the 24-bit clip, in units of
#: (window + max Σ|W|) thresholds (:func:`choose_scale`).
HEADROOM = 2.0
#: Voltage a relay or clock neuron starts from: any value in (0, 1) makes each input spike
#: (weight 1), or each step of bias 1, produce exactly one output spike with the strict
#: ``v > 1`` test.
RELAY_V0 = 0.5


@dataclass
class Population:
    """One layer of neurons: graph nodes whose channels are concatenated.

    Attributes:
        nodes: graph node indices, in channel order.
        offsets: first channel (or feature) of each node.
        shape: (C, H, W) or (F,) of the whole layer.
    """

    nodes: list
    offsets: list
    shape: tuple

    def channels(self, k: int, graph: Graph) -> slice:
        """Channel slice of member ``k``."""
        return slice(self.offsets[k], self.offsets[k] + graph.nodes[self.nodes[k]].shape[0])


def plan(graph: Graph) -> list:
    """The layers (populations) of ``graph``; the first is the input."""
    pops = [Population([0], [0], tuple(graph.nodes[0].shape))]
    for i, node in enumerate(graph.nodes[1:], start=1):
        if not node.shares_layer:
            pops.append(Population([i], [0], tuple(node.shape)))
            continue
        prev = pops[-1]
        if prev.nodes[-1] != i - 1 or tuple(prev.shape[1:]) != tuple(node.shape[1:]) or len(pops) == 1:
            raise ConversionError(f"{node.name}: a relay or clock must follow the node whose layer it shares")
        prev.offsets.append(prev.shape[0])
        prev.nodes.append(i)
        prev.shape = (prev.shape[0] + node.shape[0],) + tuple(prev.shape[1:])
    return pops


def locate(pops: list) -> dict:
    """Graph node → (population index, member index)."""
    return {n: (q, k) for q, pop in enumerate(pops) for k, n in enumerate(pop.nodes)}


@dataclass
class LayerSpec:
    """Normalised float parameters of one layer before the neuron scale is chosen.

    Attributes:
        main, skip: (weight, geometry) of the synapse from the previous layer and of the
            skip (None); conv weights (C_out, C_in / groups, kH, kW), dense (out, in).
        skip_source: population index the skip reads.
        bias: (C,) per-step bias b' in threshold units.
        u0: (C,) intended voltage at the start of the window.
    """

    main: tuple
    skip: Optional[tuple]
    skip_source: Optional[int]
    bias: torch.Tensor
    u0: torch.Tensor


def layer_spec(graph: Graph, pops: list, q: int, thetas: dict, u0: float) -> LayerSpec:
    """Weights (normalised by the thresholds ``thetas``: node → θ) of population ``q``."""
    pop, where = pops[q], locate(pops)
    groups: dict = {}
    bias = torch.zeros(pop.shape[0], dtype=torch.float64)
    start = torch.full((pop.shape[0],), float(u0), dtype=torch.float64)
    for k, n in enumerate(pop.nodes):
        node, rows = graph.nodes[n], pop.channels(k, graph)
        if node.shares_layer:
            start[rows] = RELAY_V0
        for op in node.ops:
            src_pop, src_k = where[op.source]
            scaled = op.weight * (thetas[op.source] / thetas[n])
            groups.setdefault(src_pop, []).append((rows, pops[src_pop].channels(src_k, graph), op, scaled))
            if op.bias is not None:
                bias[rows] += op.bias / thetas[n]
    if q - 1 not in groups:
        raise ConversionError(f"layer {q} ({graph.nodes[pop.nodes[0]].name}) does not read the layer before it")
    others = sorted(set(groups) - {q - 1})
    if len(others) > 1:
        raise ConversionError(f"layer {q} reads {len(others) + 1} layers; at most two (one skip) are supported")
    skip_source = others[0] if others else None
    return LayerSpec(_combine(groups[q - 1], pops[q - 1].shape, pop.shape),
                     None if skip_source is None else _combine(groups[skip_source], pops[skip_source].shape, pop.shape),
                     skip_source, bias, start)


def _combine(parts: list, src_shape: tuple, dst_shape: tuple) -> tuple:
    """One weight tensor (+ geometry) for the operators from one source layer."""
    ops = [p[2] for p in parts]
    if any(op.is_dense for op in ops):
        if not all(op.is_dense for op in ops) or len(dst_shape) != 1:
            raise ConversionError("a layer cannot mix dense and conv operators from one source")
        spatial = int(torch.tensor(src_shape[1:]).prod()) if len(src_shape) == 3 else 1
        w = torch.zeros(dst_shape[0], int(torch.tensor(src_shape).prod()), dtype=torch.float64)
        for rows, cols, _, scaled in parts:
            w[rows, cols.start * spatial:cols.stop * spatial] += scaled
        return w, None
    rows, cols, op, scaled = parts[0]
    if len(parts) == 1 and rows == slice(0, dst_shape[0]) and cols == slice(0, src_shape[0]):
        return scaled, (tuple(op.stride), tuple(op.padding), tuple(op.dilation), op.groups)
    if len({tuple(op.stride) for op in ops}) != 1 or any(tuple(op.dilation) != (1, 1) for op in ops):
        raise ConversionError("operators from one source into one layer must share the stride (dilation 1)")
    pad = tuple(max(p[2].padding[a] for p in parts) for a in range(2))
    kernel = tuple(max(pad[a] - p[2].padding[a] + p[3].shape[2 + a] for p in parts) for a in range(2))
    w = torch.zeros((dst_shape[0], src_shape[0]) + kernel, dtype=torch.float64)
    for rows, cols, op, scaled in parts:
        k = scaled.shape[2:]
        off = tuple(pad[a] - op.padding[a] for a in range(2))
        if any(2 * off[a] != kernel[a] - k[a] for a in range(2)):
            raise ConversionError("operators from one source must be centred on the same kernel")
        w[rows, cols, off[0]:off[0] + k[0], off[1]:off[1] + k[1]] += _ungroup(scaled, op.groups)
    return w, (tuple(ops[0].stride), pad, tuple(ops[0].dilation), 1)


def _ungroup(w: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped conv weight (C_out, C_in/g, kH, kW) as the equivalent full (C_out, C_in, kH, kW)."""
    if groups == 1:
        return w
    c_out, c_in_g = w.shape[:2]
    full = torch.zeros((c_out, c_in_g * groups) + tuple(w.shape[2:]), dtype=w.dtype)
    per = c_out // groups
    for g in range(groups):
        full[g * per:(g + 1) * per, g * c_in_g:(g + 1) * c_in_g] = w[g * per:(g + 1) * per]
    return full


def choose_scale(spec: LayerSpec, depth: int, split: bool = False, hold: int = 0, window: int = 0,
                 headroom: float = HEADROOM) -> tuple[int, int]:
    """The neuron scale s (a power of two) and the coarse group's exponent e (0: one group).

    s fits the bias, v_init (``depth`` steps of bias) and u (see module doc) and the
    weights of a skip. Without ``split`` it also fits every weight on the 8-bit grid
    (``max|W|·s ≤ 254``). With ``split`` (a layer that may have a coarse group,
    :func:`split_weights`) it is the power of two with the smallest summed squared rounding
    error of the two groups; e is the smallest exponent that fits the largest weight. Ties
    go to the smaller s.

    With a ``hold`` of h steps, v also has to hold the charge gathered before the window
    opens (no reset bounds it then): up to ``h·max ΣW⁺`` thresholds, but never more than
    ``headroom·(window + max Σ|W|)`` is kept free of the 24-bit clip: a neuron holding
    ``window + 1`` thresholds fires at every step of its ``window`` (T) steps anyway, and a
    larger charge clips identically on every backend (only a partial sum that clips and
    then falls back below that loses charge). Each halving of ``headroom`` can double s,
    one more bit of weight resolution (docs/residual.md, "The v headroom").
    """
    weights = [spec.main[0]] + ([spec.skip[0]] if spec.skip is not None else [])
    w_max = float(spec.main[0].abs().max())
    row_sum = sum(float(w.abs().reshape(w.shape[0], -1).sum(1).max()) for w in weights)
    v_max = float((spec.u0.abs() + depth * spec.bias.abs()).max()) + 1.0
    if hold:
        positive = sum(float(w.clamp(min=0).reshape(w.shape[0], -1).sum(1).max()) for w in weights)
        v_max += min(hold * positive, headroom * (window + row_sum))
    limits = [VTH_MAX, STATE_LIMIT / 64 / v_max / 1.01]
    limits += [WEIGHT_LIMIT / float(spec.skip[0].abs().max())] if spec.skip is not None and spec.skip[0].any() else []
    limits += [(STATE_LIMIT >> 6) / row_sum] if row_sum > 0 else []
    b_max = float(spec.bias.abs().max())
    limits += [BIAS_LIMIT / b_max] if b_max > 0 else []
    limits += [(WEIGHT_LIMIT << WEIGHT_EXP_MAX) / w_max] if w_max > 0 else []  # the coarsest grid
    single = WEIGHT_LIMIT / w_max if w_max > 0 else math.inf  # every weight on one 8-bit grid
    bound = min(limits + ([] if split else [single]))
    if bound < 1:
        raise ConversionError(f"weights up to {w_max:.3g} thresholds cannot be represented (scale {bound:.3g} < 1)")
    top = int(math.floor(math.log2(bound)))
    if not split or single >= bound:
        return 1 << top, 0
    w = spec.main[0]
    best = None
    for k in range(max(0, int(math.floor(math.log2(single)))), top + 1):
        scale, exp = 1 << k, coarse_exponent(w_max, 1 << k)
        fine, coarse = split_weights(w, scale)
        error = float(((quantize_group(fine, scale) - fine) ** 2).sum()
                      + ((quantize_group(coarse, scale, exp) - coarse) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, scale, exp)
    return best[1], best[2]


def coarse_exponent(w_max: float, scale: int) -> int:
    """The smallest weight exponent e ≥ 0 with ``w_max·s ≤ 254·2^e``."""
    return next((e for e in range(WEIGHT_EXP_MAX + 1) if w_max * scale <= WEIGHT_LIMIT << e), WEIGHT_EXP_MAX)


def split_weights(weight: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fine, coarse): the weights with ``|w|·s ≤ 254`` and the rest (zeros elsewhere)."""
    fine = weight.abs() * scale <= WEIGHT_LIMIT
    return weight * fine, weight * ~fine


def with_coarse_group(spec: LayerSpec, scale: int, source: int) -> LayerSpec:
    """``spec`` with its weights split (:func:`split_weights`): the fine ones stay the
    layer's synapse, the coarse ones become a skip (same geometry) from population ``source``."""
    fine, coarse = split_weights(spec.main[0], scale)
    return replace(spec, main=(fine, spec.main[1]), skip=(coarse, spec.main[1]), skip_source=source)


def neuron_state(spec: LayerSpec, scale: int, depth: int, bias_mode: str, held_window: int = 0
                 ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(bias current, initial voltage) per channel on the chip's grid (see module doc).

    For a layer with a hold (``held_window`` = T, its firing window) the whole bias charge
    T·b' goes into the initial voltage and no current flows: the layer cannot fire before
    its window, so nothing needs a cap, and once its input is in (a hold ≥ T) it holds all
    of its charge, exactly as the ideal neuron of the error analysis."""
    current = torch.round(spec.bias * scale) / scale
    if held_window:
        v0 = spec.u0 + held_window * current
        current = torch.zeros_like(current)
    elif bias_mode != "current":
        v0 = (spec.u0 - depth * current).clamp(max=1.0)
    else:
        v0 = spec.u0.clone()
    v0 = torch.floor(v0 * (scale << 6)) / (scale << 6)
    return current, (None if bool((v0 == 0).all()) else v0)


def make_block(spec: LayerSpec, scale: int, in_shape: tuple, out_shape: tuple, current: torch.Tensor,
               v_init: Optional[torch.Tensor]):
    """Our Conv/Dense block carrying the layer's weights, bias and initial voltage."""
    params = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0, "reset": "soft", "scale": scale}
    weight, geometry = spec.main
    if geometry is None:
        block = Dense(params, weight.shape[1], weight.shape[0])
        w5 = weight[:, :, None, None, None]
    else:
        stride, padding, dilation, groups = geometry
        block = Conv(params, in_shape[0], out_shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding,
                     dilation=dilation, groups=groups)
        w5 = weight[..., None]
    with torch.no_grad():
        block.synapse.weight.copy_(w5.to(block.synapse.weight.dtype))
    if bool((current != 0).any()):
        block.synapse.bias = torch.nn.Parameter(current.float(), requires_grad=False)
    if v_init is not None:
        block.neuron.v_init = v_init.float()
    return block


def make_skip(spec: LayerSpec, block, source_block: int, src_shape: tuple, out_shape: tuple, weight_exp: int
              ) -> SkipSynapse:
    """The skip synapse (on ``block``'s neuron grid, exponent ``weight_exp``) reading block
    ``source_block``."""
    weight, geometry = spec.skip
    hook = group_quantizer(block.neuron, weight_exp)
    if geometry is None:
        syn = synapse.Dense(weight.shape[1], weight.shape[0], pre_hook_fx=hook)
        w5 = weight[:, :, None, None, None]
    else:
        stride, padding, dilation, groups = geometry
        syn = synapse.Conv(src_shape[0], out_shape[0], tuple(weight.shape[2:]), stride=stride,
                                  padding=padding, dilation=dilation, groups=groups, pre_hook_fx=hook)
        w5 = weight[..., None]
    with torch.no_grad():
        syn.weight.copy_(w5.to(syn.weight.dtype))
    return SkipSynapse(source_block, syn, weight_exp)
