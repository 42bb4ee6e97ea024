"""Resource planning: map every layer of a network onto Loihi neurocores.

Each layer that owns neurons gets its own cores (no two layers share a core, as Lava's
partitioner does for netx blocks). A layer's N neurons, flattened in C order (C, H, W),
are cut into contiguous chunks of ``n`` neurons, one chunk per core, with ``n`` the
largest value for which every core satisfies the chip's per-core limits:

- neurons (compartments) per core: ``n ≤ neurons_per_core``;
- fan-in axons: the distinct presynaptic neurons that reach the core,
  ``#{j : counts[k, j] > 0} ≤ fan_in_axons``;
- synaptic memory: ``Σ_j axon_bits(counts[k, j]) ≤ synapse_memory_bits``;
- fan-out axons: a neuron sends one axon to each core of the next layer that holds one of
  its targets, ``Σ_{j in core} dest_cores[j] ≤ fan_out_axons`` (checked after the next
  layer is placed; the source layer is split further when needed).

``counts[k, j]`` is the number of synapses from presynaptic position j into core k
(:func:`snn2loihi.accounting.synapse_counts` with one output mask per core).

Synaptic memory follows nengo-loihi's model of Loihi's synapse encoding
(``nengo_loihi/block.py``, ``SynapseConfig.bits_per_axon``): the synapses of one input
axon on one core are stored in entries of at most 64 synapses, each entry taking
``ceil64(n_e · b + 10)`` bits (4 + 6 header bits, rounded up to 64-bit words), with
``b`` = weight bits (+ index bits in the sparse format). Dense layers use the dense
format (every neuron of the core is a target, no index) with netx's weight bits; conv and
pool layers the sparse format with 8-bit weights (Lava's Conv default) and an index wide
enough to address the core's neurons (6..12 bits, as nengo-loihi's index map).

The input layer without a neuron is the host's spike source and takes no core; the last
layer's outputs go to the host and are not counted as fan-out axons.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .accounting import layer_type, synapse_counts
from .errors import Snn2LoihiError
from .ir import ConvLayer, DenseLayer, InputLayer, Network


class PlanningError(Snn2LoihiError):
    """A layer cannot be placed on the chip's cores; the message names the limit and the fix."""


@dataclass(frozen=True)
class ChipSpec:
    """Per-core limits of a Loihi generation.

    Attributes:
        name: ``"loihi1"`` or ``"loihi2"``.
        neurons_per_core: compartments (neurons) per neurocore.
        fan_in_axons: input axons per core, or None when unpublished (not checked).
        fan_out_axons: output axons per core, or None when unpublished (not checked).
        synapse_memory_bits: synaptic memory per core in bits.
        cores_per_chip: neurocores per chip.
        source: where the numbers come from.
        notes: what the model leaves out.
    """

    name: str
    neurons_per_core: int
    fan_in_axons: Optional[int]
    fan_out_axons: Optional[int]
    synapse_memory_bits: int
    cores_per_chip: int
    source: str
    notes: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "neurons_per_core": self.neurons_per_core, "fan_in_axons": self.fan_in_axons,
                "fan_out_axons": self.fan_out_axons, "synapse_memory_kb": self.synapse_memory_bits / 8192,
                "cores_per_chip": self.cores_per_chip, "source": self.source, "notes": self.notes}


LOIHI1 = ChipSpec(
    name="loihi1", neurons_per_core=1024, fan_in_axons=4096, fan_out_axons=4096,
    synapse_memory_bits=128 * 1024 * 8, cores_per_chip=128,
    source=("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro "
            "38(1), 2018: 128 neuromorphic cores per chip, 1,024 compartments, 4,096 fan-in and 4,096 fan-out "
            "axon routing slots and 128 KB of synaptic state per core; the same limits as nengo-loihi's "
            "block.py (MAX_COMPARTMENTS 1024, MAX_IN_AXONS/MAX_OUT_AXONS 4096, MAX_SYNAPSE_BITS 16384 x 64)"),
    notes="Synapse bits follow nengo-loihi's encoding model; axon delays, learning tags and routing tables "
          "beyond the axon counts are not modelled.",
)

LOIHI2 = ChipSpec(
    name="loihi2", neurons_per_core=8192, fan_in_axons=None, fan_out_axons=None,
    synapse_memory_bits=192 * 1024 * 8, cores_per_chip=128,
    source=("Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021: "
            "128 neurocores per chip, up to 8,192 neurons per core, 192 KB of flexibly allocated memory per "
            "core (neuron state, synapses and routing share it), up to 1 M neurons and 120 M synapses per chip"),
    notes=("Intel publishes no fan-in/fan-out axon limits or synapse encoding for Loihi 2 (lava-loihi's "
           "partitioner is proprietary): axon limits are not checked, and synaptic memory is estimated with "
           "Loihi 1's encoding against the whole 192 KB, neuron state and routing tables not counted, so "
           "core counts are a lower bound."),
)

CHIPS = {"loihi1": LOIHI1, "loihi2": LOIHI2}

#: Loihi synapse encoding (nengo-loihi ``SynapseConfig``): supported weight widths, index
#: widths, synapses per entry, header bits per entry, memory word.
WEIGHT_BITS = (1, 2, 3, 4, 5, 6, 8)
INDEX_BITS = (6, 7, 8, 9, 10, 11, 12)
SYNAPSES_PER_ENTRY = 64
ENTRY_HEADER_BITS = 4 + 6
WORD_BITS = 64
CONV_WEIGHT_BITS = 8
#: Output masks evaluated at once (bounds the (K, *in_shape) float64 temporaries).
_MASK_BATCH = 64


def axon_bits(n_synapses: np.ndarray, bits_per_synapse: int) -> np.ndarray:
    """Synaptic memory of one input axon with ``n`` synapses on a core, in bits.

    ``Σ_entries ceil64(n_e · b + 10)`` over entries of at most 64 synapses; 0 for n = 0.
    """
    n = np.asarray(n_synapses, dtype=np.int64)
    full, rest = np.divmod(n, SYNAPSES_PER_ENTRY)

    def entry(m):
        return -(-(m * bits_per_synapse + ENTRY_HEADER_BITS) // WORD_BITS) * WORD_BITS

    return full * entry(SYNAPSES_PER_ENTRY) + np.where(rest > 0, entry(rest), 0)


def weight_bits(layer) -> int:
    """Stored weight width: netx's ``num_weight_bits`` for dense layers (capped at 8 and
    rounded up to a supported width), 8 for conv and pool."""
    if not isinstance(layer, DenseLayer):
        return CONV_WEIGHT_BITS
    from .sim.synapses import dense_weights

    bits = min(dense_weights(layer.weight).num_weight_bits, 8)
    return next(b for b in WEIGHT_BITS if b >= bits)


def synapse_format(layer, neurons_per_core: int, bits: Optional[int] = None) -> tuple[int, str]:
    """(bits per synapse, description) of ``layer``'s synapses on a core of that size;
    ``bits`` is :func:`weight_bits` when already known."""
    bits = weight_bits(layer) if bits is None else bits
    if isinstance(layer, DenseLayer):
        return bits, f"dense {bits}-bit"
    index = max(1, math.ceil(math.log2(max(neurons_per_core, 2))))
    index = next((b for b in INDEX_BITS if b >= index), index)
    return bits + index, f"sparse {bits}-bit + {index}-bit index"


def _chunk_masks(neurons: int, n: int, start: int, stop: int, shape: tuple) -> np.ndarray:
    """0/1 masks (stop - start, *shape) of the contiguous chunks [k·n, (k+1)·n)."""
    masks = np.zeros((stop - start, neurons))
    for row, k in enumerate(range(start, stop)):
        masks[row, k * n:(k + 1) * n] = 1
    return masks.reshape((stop - start,) + tuple(shape))


@dataclass
class _Fit:
    """Per-core statistics of one partition of a layer into chunks of n neurons."""

    n: int
    fan_in: np.ndarray          # (K,) input axons per core
    bits: np.ndarray            # (K,) synaptic memory per core
    dest_cores: np.ndarray      # (P,) cores each presynaptic position reaches
    synapse_format: str
    skip_dest: np.ndarray       # (P_skip,) the same for a residual skip's source (empty without)


def _group_stats(syn, n: int, neurons: int, b: int) -> tuple:
    """(fan-in per core, bits per core, destination cores per presynaptic position) of one
    synapse group ``syn`` into a layer of ``neurons`` cut into chunks of ``n``."""
    cores = -(-neurons // n)
    inputs = int(np.prod(syn.in_shape))
    if isinstance(syn, DenseLayer):  # every input reaches every neuron: counts[k, j] = chunk size
        sizes = np.minimum(n, neurons - n * np.arange(cores))
        return np.full(cores, inputs), inputs * axon_bits(sizes, b), np.full(inputs, cores)
    fan_in, bits, dest = [], [], np.zeros(inputs, np.int64)
    for start in range(0, cores, _MASK_BATCH):
        stop = min(cores, start + _MASK_BATCH)
        counts = synapse_counts(syn, _chunk_masks(neurons, n, start, stop, syn.out_shape))
        counts = counts.reshape(stop - start, -1)
        fan_in.append((counts > 0).sum(axis=1))
        bits.append(axon_bits(counts, b).sum(axis=1))
        dest += (counts > 0).sum(axis=0)
    return np.concatenate(fan_in), np.concatenate(bits), dest


def _fit(layer, n: int, wbits: int, skip=None, skip_wbits: int = 0) -> _Fit:
    """Statistics of cutting ``layer`` into cores of ``n`` neurons (input layers: no synapses);
    ``wbits`` is the layer's :func:`weight_bits`; ``skip`` a residual skip's synapse layer
    (:meth:`snn2loihi.ir.Network.skip_synapse`), whose axons and synapses share the cores."""
    neurons = int(np.prod(layer.out_shape))
    cores = -(-neurons // n)
    none = np.zeros(0, np.int64)
    if isinstance(layer, InputLayer):
        return _Fit(n, np.zeros(cores, np.int64), np.zeros(cores, np.int64), none, "none", none)
    b, fmt = synapse_format(layer, min(n, neurons), wbits)
    fan_in, bits, dest = _group_stats(layer, n, neurons, b)
    skip_dest = none
    if skip is not None:
        b_skip, fmt_skip = synapse_format(skip, min(n, neurons), skip_wbits)
        skip_fan_in, skip_bits, skip_dest = _group_stats(skip, n, neurons, b_skip)
        fan_in, bits, fmt = fan_in + skip_fan_in, bits + skip_bits, f"{fmt}; skip {fmt_skip}"
    return _Fit(n, fan_in, bits, dest, fmt, skip_dest)


def _violations(fit: _Fit, chip: ChipSpec) -> list:
    """Names of the per-core limits that ``fit`` breaks, in a fixed order."""
    out = []
    if chip.fan_in_axons is not None and fit.fan_in.max(initial=0) > chip.fan_in_axons:
        out.append("fan-in axons")
    if fit.bits.max(initial=0) > chip.synapse_memory_bits:
        out.append("synaptic memory")
    return out


def _out_axons(dest: np.ndarray, n: int) -> np.ndarray:
    """Output axons per core of a source layer cut into chunks of n: Σ dest over the chunk."""
    pad = -len(dest) % n
    return np.pad(dest, (0, pad)).reshape(-1, n).sum(axis=1)


@dataclass
class LayerPlan:
    """Placement of one layer.

    Attributes:
        index: position in ``Network.layers``.
        name: ``"{index}:{type}"``.
        neurons: neurons of the layer.
        cores: cores it takes.
        neurons_per_core: neurons on every core but possibly the last.
        binding: the limit that fixes ``neurons_per_core`` (``"neurons per core"``,
            ``"fan-in axons"``, ``"synaptic memory"``, ``"fan-out axons"``, or
            ``"none (one core)"`` when the whole layer fits on one core).
        fan_in: input axons per core, (cores,).
        synapse_bits: synaptic memory per core in bits, (cores,).
        out_axons: output axons per core towards the next layer, (cores,) (0 for the last).
        synapse_format: the encoding assumed for its synapses.
        in_dest_cores: for every presynaptic position (flattened), the number of this
            layer's cores it sends a spike message to; empty for input layers.
        skip_dest_cores: the same for the neurons of a residual skip's source layer
            (empty without a skip).
    """

    index: int
    name: str
    neurons: int
    cores: int
    neurons_per_core: int
    binding: str
    fan_in: np.ndarray
    synapse_bits: np.ndarray
    out_axons: np.ndarray
    synapse_format: str
    in_dest_cores: np.ndarray = field(repr=False)
    skip_dest_cores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def to_dict(self, chip: ChipSpec) -> dict:
        kb = self.synapse_bits / 8192
        return {"index": self.index, "name": self.name, "neurons": self.neurons, "cores": self.cores,
                "neurons_per_core": self.neurons_per_core, "binding_limit": self.binding,
                "max_fan_in_axons": int(self.fan_in.max(initial=0)),
                "max_fan_out_axons": int(self.out_axons.max(initial=0)),
                "synapse_format": self.synapse_format,
                "synapse_kb_per_core": [round(float(v), 3) for v in kb],
                "max_synapse_kb": float(kb.max(initial=0)),
                "max_synapse_memory_use": float(self.synapse_bits.max(initial=0) / chip.synapse_memory_bits)}


@dataclass
class Plan:
    """Core mapping of a network on one chip generation."""

    chip: ChipSpec
    layers: list
    source: str = ""

    @property
    def cores(self) -> int:
        return int(sum(layer.cores for layer in self.layers))

    @property
    def chips(self) -> int:
        return -(-self.cores // self.chip.cores_per_chip)

    def layer(self, index: int) -> LayerPlan:
        """The plan of ``Network.layers[index]``."""
        for layer in self.layers:
            if layer.index == index:
                return layer
        raise KeyError(f"layer {index} has no neurons, so no cores")

    def to_dict(self) -> dict:
        return {"file": self.source, "chip": self.chip.to_dict(), "cores": self.cores, "chips": self.chips,
                "layers": [layer.to_dict(self.chip) for layer in self.layers]}

    def format_table(self) -> str:
        chip = self.chip
        head = ("layer", "neurons", "cores", "n/core", "fan-in", "fan-out", "syn KB max", "mem %", "binding limit",
                "synapses")
        rows = [head]
        for layer in self.layers:
            d = layer.to_dict(chip)
            rows.append((d["name"], str(d["neurons"]), str(d["cores"]), str(d["neurons_per_core"]),
                         str(d["max_fan_in_axons"]), str(d["max_fan_out_axons"]), f"{d['max_synapse_kb']:.2f}",
                         f"{100 * d['max_synapse_memory_use']:.1f}", d["binding_limit"], d["synapse_format"]))
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        fmt = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths))
        limits = (f"{chip.neurons_per_core} neurons, "
                  f"{chip.fan_in_axons if chip.fan_in_axons else 'unchecked'} fan-in / "
                  f"{chip.fan_out_axons if chip.fan_out_axons else 'unchecked'} fan-out axons, "
                  f"{chip.synapse_memory_bits // 8192} KB synapses per core; {chip.cores_per_chip} cores per chip")
        lines = [f"{self.source or 'network'} on {chip.name}: {self.cores} cores, {self.chips} chip(s)",
                 f"limits: {limits}", fmt(head), "-" * len(fmt(head))]
        lines += [fmt(r) for r in rows[1:]]
        lines += ["", f"Source: {chip.source}"]
        if chip.notes:
            lines.append(f"Note: {chip.notes}")
        return "\n".join(lines)


def _where(net: Network, name: str) -> str:
    return f"{net.source}: layer {name}" if net.source else f"layer {name}"


def _max_single_fan_in(layer) -> int:
    """Largest number of presynaptic neurons of one neuron: dense ``in_features``; conv /
    pool the taps that read real (not padded) positions, times the input channels per
    group, from a forward convolution of ones."""
    if isinstance(layer, DenseLayer):
        return int(layer.weight.shape[1])
    per_group = layer.weight.shape[1] if isinstance(layer, ConvLayer) else 1  # pool: depthwise
    ones = torch.ones((1, 1) + tuple(layer.in_shape[1:]), dtype=torch.float64)
    taps = F.conv2d(ones, torch.ones((1, 1) + layer.kernel, dtype=torch.float64), stride=layer.stride,
                    padding=layer.padding, dilation=layer.dilation)
    return int(taps.max().item()) * per_group


def _place(net: Network, index: int, chip: ChipSpec, fit: Callable[[int], _Fit]) -> _Fit:
    """Largest chunk size meeting the fan-in and memory limits (binary search on n);
    ``fit(n)`` gives the statistics of a cut into chunks of n."""
    layer = net.layers[index]
    name = f"{index}:{layer_type(layer)}"
    n = min(int(np.prod(layer.out_shape)), chip.neurons_per_core)
    first = fit(n)
    if not _violations(first, chip):
        return first
    groups = [layer] + ([net.skip_synapse(index)] if getattr(layer, "skip", None) is not None else [])
    fan_in = sum(_max_single_fan_in(g) for g in groups)  # one neuron's axons (both groups: an upper bound)
    bits = sum(_max_single_fan_in(g) * int(axon_bits(1, synapse_format(g, 1)[0])) for g in groups)
    if chip.fan_in_axons is not None and fan_in > chip.fan_in_axons:
        raise PlanningError(
            f"{_where(net, name)}: one neuron needs {fan_in} input axons, more than the {chip.fan_in_axons} "
            f"a {chip.name} core has; fix: reduce its fan-in below {chip.fan_in_axons} (fewer input channels "
            f"or a smaller kernel for conv, a pooling or narrower layer before a dense layer), or plan for "
            f"loihi2")
    if bits > chip.synapse_memory_bits:
        raise PlanningError(
            f"{_where(net, name)}: the synapses of one neuron take {bits / 8192:.1f} KB, more than the "
            f"{chip.synapse_memory_bits // 8192} KB of a {chip.name} core; fix: reduce its fan-in or the weight "
            f"precision")
    low, high = 1, n  # low fits, high does not
    while high - low > 1:
        mid = (low + high) // 2
        if _violations(fit(mid), chip):
            high = mid
        else:
            low = mid
    return fit(low)


def plan_network(net: Network, chip: ChipSpec | str = LOIHI1) -> Plan:
    """Place every layer that owns neurons on ``chip``'s cores.

    A residual layer's skip (a second synapse group from an earlier layer) adds its axons
    and synapses to the layer's cores and its destination cores to the source's fan-out.

    Args:
        net: the network.
        chip: a :class:`ChipSpec` or a name in :data:`CHIPS`.

    Returns:
        a :class:`Plan`.

    Raises:
        PlanningError: a layer cannot be mapped (one neuron exceeds a per-core limit);
            the message names the layer, the limit and the fix.
        InputError: a layer type the planner does not know.
    """
    if isinstance(chip, str):
        if chip not in CHIPS:
            raise PlanningError(f"unknown chip {chip!r} (known: {', '.join(CHIPS)})")
        chip = CHIPS[chip]
    indices = [i for i, layer in net.neuron_layers]
    for layer in net.layers:
        layer_type(layer)  # unknown layer types fail here, with their name
    skips = {i: net.skip_synapse(i) for i in indices if getattr(net.layers[i], "skip", None) is not None}

    def fitter(i: int) -> Callable[[int], _Fit]:
        layer = net.layers[i]
        wbits = 0 if isinstance(layer, InputLayer) else weight_bits(layer)
        skip_wbits = weight_bits(skips[i]) if i in skips else 0
        return lambda n: _fit(layer, n, wbits, skips.get(i), skip_wbits)

    fit_of = {i: fitter(i) for i in indices}
    fits = {i: _place(net, i, chip, fit_of[i]) for i in indices}
    binding = {}
    for i in indices:
        neurons = int(np.prod(net.layers[i].out_shape))
        if fits[i].n < min(neurons, chip.neurons_per_core):
            binding[i] = _violations(fit_of[i](fits[i].n + 1), chip)[0]
        else:
            binding[i] = "neurons per core" if neurons > chip.neurons_per_core else "none (one core)"
    # fan-out: the next layer's (and any skip target's) placement fixes each source neuron's
    # destination cores; walk backwards so a source layer is split after its targets are final
    out_axons = {}
    for pos in range(len(indices) - 1, -1, -1):
        src = indices[pos]
        dest = np.zeros(int(np.prod(net.layers[src].out_shape)), np.int64)
        if pos + 1 < len(indices):
            dest += fits[indices[pos + 1]].dest_cores
        for k in skips:
            if net.layers[k].skip.source == src:
                dest += fits[k].skip_dest
        if chip.fan_out_axons is not None:
            name = f"{src}:{layer_type(net.layers[src])}"
            if dest.max(initial=0) > chip.fan_out_axons:
                raise PlanningError(
                    f"{_where(net, name)}: one neuron sends spikes to {int(dest.max())} cores of the next layers, "
                    f"more than the {chip.fan_out_axons} output axons of a {chip.name} core; fix: make the next "
                    f"layer smaller so that it needs fewer cores")
            n = fits[src].n
            while _out_axons(dest, n).max(initial=0) > chip.fan_out_axons:  # cheap: prefix sums only
                n -= 1
            if n != fits[src].n:
                binding[src] = "fan-out axons"
                fits[src] = fit_of[src](n)
                while _violations(fits[src], chip):  # a shifted chunk boundary can cost an axon or a word
                    fits[src] = fit_of[src](fits[src].n - 1)
        out_axons[src] = _out_axons(dest, fits[src].n)
    layers = []
    for i in indices:
        fit, layer = fits[i], net.layers[i]
        neurons = int(np.prod(layer.out_shape))
        layers.append(LayerPlan(index=i, name=f"{i}:{layer_type(layer)}", neurons=neurons, cores=len(fit.fan_in),
                                neurons_per_core=fit.n, binding=binding[i], fan_in=fit.fan_in,
                                synapse_bits=fit.bits, out_axons=out_axons[i], synapse_format=fit.synapse_format,
                                in_dest_cores=fit.dest_cores, skip_dest_cores=fit.skip_dest))
    return Plan(chip=chip, layers=layers, source=net.source)
