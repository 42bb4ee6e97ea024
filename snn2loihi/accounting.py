"""Per-layer and total accounting of one simulated run: spikes, synaptic ops, neuron
updates, the MACs of the same architecture run as an ANN, and energy per inference.

Everything is counted from the spikes an actual run produced (``SimResult`` of the
emulator or of the Lava runner), not estimated from mean firing rates.

Notation (per layer l that owns neurons, N samples, T time steps per sample):

- ``s_l[n, i, t]`` ∈ {0, 1}: spike of neuron i of layer l at step t of sample n; the
  presynaptic spikes ``p_l`` of a synapse layer are those of the previous neuron layer
  (flatten layers only reshape), or the binary input ``x`` for the first synapse layer
  when the input layer has no neuron.
- fan-out ``f_l[j]``: the number of synapses from presynaptic position j into layer l,
  i.e. the number of (output neuron, kernel tap) pairs whose receptive field contains j.
  Dense: ``f[j] = out_features``. Conv/pool: computed exactly (borders, padding, stride,
  dilation, groups) as ``∂/∂x_j Σ_outputs conv(x, 1)``, the column sums of the layer's
  connection matrix with every weight replaced by 1 (see :func:`fanout_map`).
- synaptic ops ``SOP_l = Σ_n Σ_t Σ_j p_l[n, j, t] · f_l[j]`` (dense convention: zero
  weights count as synapses); the effective count uses ``f_l^eff[j]``, the fan-out through
  non-zero stored weights only.
- neuron updates: every neuron is updated every step, ``U_l = N · neurons_l · T``; an
  update at step t is *active* when the neuron received at least one synaptic event at
  t, i.e. some presynaptic neuron in its receptive field spiked at t - 1 (Lava's one-step
  synaptic delay; nothing arrives at t = 0). Neurons of an input layer driven through
  the input port are active at t when their input ``x[n, i, t]`` is non-zero (no delay).
  ``inactive = U_l - active``.
- ANN MACs per sample of the same architecture (no time dimension): dense ``in·out``,
  conv ``kH·kW·(C_in/groups)·C_out·H_out·W_out``, pool ``kH·kW·C·H_out·W_out``.

Energy per inference (mean over the N samples), in nanojoules::

    E_SNN,l = Σ_op  e_op · count_op,l / N        (e_op in pJ, result × 1e-3 → nJ)
    E_ANN,l = e_MAC · MAC_l

with the constants of an :class:`EnergyModel` preset; the defaults are
``LOIHI1_DAVIES2018`` (23.6 pJ per synaptic op, 81 pJ per active and 52 pJ per inactive
neuron update; pre-silicon figures) and ``ANN_FP32_HOROWITZ2014`` (4.6 pJ per FP32 MAC).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, PoolLayer
from .sim.emulator import SimResult

#: Unit of every energy value this module reports: nanojoules per inference (per sample).
ENERGY_UNIT = "nJ per inference (mean over samples)"
_PJ_TO_NJ = 1e-3

#: Operation counts an :class:`EnergyModel` may price, all per sample (per inference):
#: ``synop`` dense synaptic ops, ``synop_effective`` synaptic ops through non-zero
#: weights, ``active_update`` / ``inactive_update`` neuron updates, ``spike`` spikes
#: emitted, ``mac`` multiply-accumulates of the ANN baseline.
OPS = ("synop", "synop_effective", "active_update", "inactive_update", "spike", "mac")

#: Presynaptic elements per chunk when counting active updates (bounds temporaries to ~16 MiB of bools).
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation, with the publication it comes from.

    ``E = Σ_op pj_per_op[op] · count[op]`` in picojoules, for op in :data:`OPS`.

    Attributes:
        name: preset identifier.
        pj_per_op: op name → energy per op in picojoules (pJ).
        source: full citation of the constants.
        notes: caveats (process node, pre-silicon, what is left out).
    """

    name: str
    pj_per_op: Mapping[str, float]
    source: str
    notes: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.pj_per_op) - set(OPS))
        if unknown:
            raise ValueError(f"energy model {self.name!r}: unknown operations {unknown} (known: {', '.join(OPS)})")
        if any(not math.isfinite(v) or v < 0 for v in self.pj_per_op.values()):
            raise ValueError(f"energy model {self.name!r}: energies must be finite and >= 0 pJ")
        object.__setattr__(self, "pj_per_op", MappingProxyType(dict(self.pj_per_op)))

    def energy_pj(self, counts: Mapping[str, float]) -> float:
        """``Σ_op pj_per_op[op] · counts[op]`` in pJ; ops absent from ``counts`` count 0."""
        return float(sum(e * float(counts.get(op, 0)) for op, e in self.pj_per_op.items()))

    def breakdown_pj(self, counts: Mapping[str, float]) -> dict[str, float]:
        """Energy of each priced op in pJ: ``{op: pj_per_op[op] · counts[op]}``."""
        return {op: e * float(counts.get(op, 0)) for op, e in self.pj_per_op.items()}

    def to_dict(self) -> dict:
        return {"name": self.name, "pj_per_op": dict(self.pj_per_op), "unit": "pJ per op",
                "source": self.source, "notes": self.notes}


#: Loihi 1 event model. Davies et al., Table 2 (pre-silicon).
LOIHI1_DAVIES2018 = EnergyModel(
    name="LOIHI1_DAVIES2018",
    pj_per_op={"synop": 23.6, "active_update": 81.0, "inactive_update": 52.0},
    source=("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
            "IEEE Micro 38(1):82-99, 2018, Table 2: 23.6 pJ per synaptic spike op (min), "
            "81 pJ per active / 52 pJ per inactive neuron update"),
    notes=("Loihi 1, 14 nm; Table 2 gives pre-silicon (SDF + SPICE) figures, not measured energy. "
           "Spike routing (1.7 pJ per spike within a tile, 3.0/4.0 pJ per E-W/N-S tile hop), "
           "barrier synchronisation, x86 cores, I/O and static (leakage) power are not included."),
)

#: ANN baseline: one FP32 multiply (3.7 pJ) + add (0.9 pJ) per MAC, 45 nm.
ANN_FP32_HOROWITZ2014 = EnergyModel(
    name="ANN_FP32_HOROWITZ2014",
    pj_per_op={"mac": 4.6},
    source=("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
            "45 nm 0.9 V: FP32 mult 3.7 pJ + FP32 add 0.9 pJ = 4.6 pJ per MAC"),
    notes="Arithmetic only, 45 nm: memory accesses (SRAM 10-100 pJ, DRAM 1.3-2.6 nJ per 64 bit) are not included.",
)

CONVENTIONS = {
    "fan_out": ("Synaptic ops = sum over every presynaptic spike of its real fan-out into the layer: "
                "the number of (output neuron, kernel tap) pairs whose receptive field contains the "
                "spiking position, computed exactly per input position (conv borders, padding, stride, "
                "dilation and groups included; dense: out_features; pool: the per-channel kernel). "
                "'synops' counts zero weights as synapses (dense convention); 'effective_synops' "
                "counts only synapses with a non-zero stored weight (the IR weights, before Lava "
                "Dense's own clip/truncation)."),
    "synops_window": ("Every presynaptic spike inside the simulated window is counted, including spikes "
                      "at the last step whose events would be delivered one step after the window."),
    "active_inactive": ("Every neuron is updated every step (neuron updates = neurons x T per sample). An "
                        "update at step t is active when the neuron received at least one synaptic event "
                        "at t, i.e. a presynaptic neuron connected to it (zero weights included) spiked at "
                        "t-1 (one-step synaptic delay; nothing arrives at t=0). Input-layer neurons driven "
                        "by the input port are active when their input is non-zero at t. Bias-only drive "
                        "does not make an update active. All other updates are inactive."),
    "timesteps": ("T is the whole simulated window per sample, including any zero steps padded to let the "
                  "network's latency (one step per synapse layer) flush out."),
    "per_sample": ("Counts named '*_per_sample', 'ann_macs' and every energy are per inference: the mean "
                   "over the N samples. 'spikes', 'synops', 'effective_synops', 'active_updates' and "
                   "'inactive_updates' are totals over all samples. firing_rate = spikes / (N x neurons x T)."),
    "energy": ("E_SNN = 23.6 pJ x synops + 81 pJ x active updates + 52 pJ x inactive updates per inference "
               "(constants of the SNN model, see energy.constants); E_ANN = 4.6 pJ x MACs of the same "
               "architecture as a non-spiking FP32 ANN. Energies are in nJ per inference; ratio = E_ANN / "
               "E_SNN. The Loihi 1 constants are pre-silicon estimates (Davies et al. 2018, Table 2); spike "
               "routing, static power, I/O and memory traffic are not modelled, so this is an estimate of "
               "dynamic core energy, not a measurement."),
    "ann_baseline": ("ANN MACs per sample: dense in x out; conv kH x kW x (C_in/groups) x C_out x H_out x "
                     "W_out; pool kH x kW x C x H_out x W_out; input layers and neuron updates cost nothing."),
}


@dataclass
class LayerAccount:
    """Counts of one layer that owns neurons.

    Totals are summed over all N samples; ``*_per_sample`` are means over samples.

    Attributes:
        index: position in ``Network.layers``.
        name: ``"{index}:{type}"``, e.g. ``"1:conv"``.
        type: ``"input"``, ``"dense"``, ``"conv"`` or ``"pool"``.
        shape: neuron shape (C, H, W) or (F,).
        neurons: number of neurons, prod(shape).
        spikes: spikes emitted, total over samples.
        synops: synaptic ops into this layer (dense convention), total over samples.
        effective_synops: synaptic ops through non-zero weights, total over samples.
        active_updates: active neuron updates, total over samples.
        inactive_updates: inactive neuron updates, total over samples.
        ann_macs: MACs of this layer in the ANN baseline, per sample.
        energy_nj: SNN energy of this layer, nJ per inference.
        ann_energy_nj: ANN energy of this layer, nJ per inference.
        energy_breakdown_nj: SNN energy per priced op, nJ per inference.
    """

    index: int
    name: str
    type: str
    shape: tuple
    neurons: int
    n_samples: int
    timesteps: int
    spikes: int
    synops: int
    effective_synops: int
    active_updates: int
    inactive_updates: int
    ann_macs: int
    energy_nj: float = 0.0
    ann_energy_nj: float = 0.0
    energy_breakdown_nj: dict = field(default_factory=dict)

    @property
    def spikes_per_sample(self) -> float:
        return self.spikes / self.n_samples

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per step: spikes / (N · neurons · T)."""
        return self.spikes / (self.n_samples * self.neurons * self.timesteps)

    @property
    def synops_per_sample(self) -> float:
        return self.synops / self.n_samples

    @property
    def effective_synops_per_sample(self) -> float:
        return self.effective_synops / self.n_samples

    @property
    def neuron_updates_per_sample(self) -> int:
        """neurons · T."""
        return self.neurons * self.timesteps

    @property
    def active_updates_per_sample(self) -> float:
        return self.active_updates / self.n_samples

    @property
    def inactive_updates_per_sample(self) -> float:
        return self.inactive_updates / self.n_samples

    def op_counts(self) -> dict[str, float]:
        """Per-sample counts of every op in :data:`OPS` (the input of an :class:`EnergyModel`)."""
        return {"synop": self.synops_per_sample, "synop_effective": self.effective_synops_per_sample,
                "active_update": self.active_updates_per_sample,
                "inactive_update": self.inactive_updates_per_sample,
                "spike": self.spikes_per_sample, "mac": float(self.ann_macs)}

    def to_dict(self) -> dict:
        return {
            "index": self.index, "name": self.name, "type": self.type, "shape": list(self.shape),
            "neurons": self.neurons, "spikes": self.spikes, "spikes_per_sample": self.spikes_per_sample,
            "firing_rate": self.firing_rate, "synops": self.synops, "synops_per_sample": self.synops_per_sample,
            "effective_synops": self.effective_synops,
            "effective_synops_per_sample": self.effective_synops_per_sample,
            "neuron_updates_per_sample": self.neuron_updates_per_sample,
            "active_updates": self.active_updates, "inactive_updates": self.inactive_updates,
            "active_updates_per_sample": self.active_updates_per_sample,
            "inactive_updates_per_sample": self.inactive_updates_per_sample,
            "ann_macs": self.ann_macs, "energy_nj": self.energy_nj, "ann_energy_nj": self.ann_energy_nj,
            "energy_breakdown_nj": dict(self.energy_breakdown_nj),
        }


@dataclass
class Accounting:
    """Accounting of one run: one :class:`LayerAccount` per layer that owns neurons.

    Attributes:
        layers: per-layer counts, in network order.
        n_samples: N.
        timesteps: T, the whole simulated window per sample.
        input_spikes: binary input spikes, total over samples (0 when the input layer has
            a neuron: its spikes are then in ``layers[0]``).
        snn_model, ann_model: the energy constants used.
    """

    layers: list
    n_samples: int
    timesteps: int
    input_spikes: int
    snn_model: EnergyModel
    ann_model: EnergyModel

    def _sum(self, attr: str):
        return sum(getattr(layer, attr) for layer in self.layers)

    @property
    def energy_nj(self) -> float:
        """Total SNN energy, nJ per inference."""
        return float(self._sum("energy_nj"))

    @property
    def ann_energy_nj(self) -> float:
        """Total ANN-baseline energy, nJ per inference."""
        return float(self._sum("ann_energy_nj"))

    @property
    def ratio(self) -> Optional[float]:
        """E_ANN / E_SNN (> 1 means the SNN estimate is cheaper); None if E_SNN is 0."""
        snn = self.energy_nj
        return self.ann_energy_nj / snn if snn > 0 else None

    def total(self) -> dict:
        """Network totals (same keys as a layer where they make sense)."""
        n, t = self.n_samples, self.timesteps
        neurons = self._sum("neurons")
        spikes, synops, eff = self._sum("spikes"), self._sum("synops"), self._sum("effective_synops")
        active, inactive = self._sum("active_updates"), self._sum("inactive_updates")
        breakdown: dict[str, float] = {}
        for layer in self.layers:
            for op, e in layer.energy_breakdown_nj.items():
                breakdown[op] = breakdown.get(op, 0.0) + e
        return {
            "neurons": int(neurons), "timesteps": t, "n_samples": n,
            "input_spikes": self.input_spikes, "input_spikes_per_sample": self.input_spikes / n,
            "spikes": int(spikes), "spikes_per_sample": spikes / n,
            "firing_rate": spikes / (n * neurons * t) if neurons else 0.0,
            "synops": int(synops), "synops_per_sample": synops / n,
            "effective_synops": int(eff), "effective_synops_per_sample": eff / n,
            "neuron_updates_per_sample": int(neurons * t),
            "active_updates": int(active), "inactive_updates": int(inactive),
            "active_updates_per_sample": active / n, "inactive_updates_per_sample": inactive / n,
            "ann_macs": int(self._sum("ann_macs")),
            "energy_nj": self.energy_nj, "ann_energy_nj": self.ann_energy_nj,
            "energy_breakdown_nj": breakdown,
        }

    def to_dict(self) -> dict:
        """JSON-ready summary.

        Keys: ``n_samples``, ``timesteps``, ``layers`` (list of per-layer dicts),
        ``total``, ``energy`` {``unit``, ``per_layer``, ``total``, ``ann_baseline``,
        ``ratio``, ``constants``}, ``conventions`` (strings).
        """
        total = self.total()
        return {
            "n_samples": self.n_samples,
            "timesteps": self.timesteps,
            "layers": [layer.to_dict() for layer in self.layers],
            "total": total,
            "energy": {
                "unit": ENERGY_UNIT,
                "per_layer": [{"name": layer.name, "snn_energy_nj": layer.energy_nj,
                               "ann_energy_nj": layer.ann_energy_nj,
                               "snn_breakdown_nj": dict(layer.energy_breakdown_nj)} for layer in self.layers],
                "total": {"snn_energy_nj": self.energy_nj, "snn_breakdown_nj": total["energy_breakdown_nj"]},
                "ann_baseline": {"ann_energy_nj": self.ann_energy_nj, "macs_per_sample": total["ann_macs"]},
                "ratio": self.ratio,
                "ratio_definition": "ann_energy_nj / snn_energy_nj",
                "constants": {"snn": self.snn_model.to_dict(), "ann": self.ann_model.to_dict()},
            },
            "conventions": dict(CONVENTIONS),
        }

    def format_table(self) -> str:
        """Human-readable per-layer table, totals, ratio, and the energy sources below it."""
        head = ("layer", "shape", "neurons", "spk/smp", "rate", "synops/smp", "eff.syn/smp",
                "active/smp", "inactive/smp", "ANN MACs", "E_SNN nJ", "E_ANN nJ")
        rows = [head]
        for la in self.layers:
            rows.append((la.name, "x".join(map(str, la.shape)), f"{la.neurons}", f"{la.spikes_per_sample:.1f}",
                         f"{la.firing_rate:.4f}", f"{la.synops_per_sample:.4g}",
                         f"{la.effective_synops_per_sample:.4g}", f"{la.active_updates_per_sample:.4g}",
                         f"{la.inactive_updates_per_sample:.4g}", f"{la.ann_macs}", f"{la.energy_nj:.4g}",
                         f"{la.ann_energy_nj:.4g}"))
        t = self.total()
        rows.append(("total", "", f"{t['neurons']}", f"{t['spikes_per_sample']:.1f}", f"{t['firing_rate']:.4f}",
                     f"{t['synops_per_sample']:.4g}", f"{t['effective_synops_per_sample']:.4g}",
                     f"{t['active_updates_per_sample']:.4g}", f"{t['inactive_updates_per_sample']:.4g}",
                     f"{t['ann_macs']}", f"{t['energy_nj']:.4g}", f"{t['ann_energy_nj']:.4g}"))
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        fmt = lambda r: "  ".join(v.rjust(w) if c else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths)))
        lines = [fmt(rows[0]), "-" * len(fmt(rows[0]))] + [fmt(r) for r in rows[1:-1]]
        lines += ["-" * len(fmt(rows[0])), fmt(rows[-1])]
        ratio = self.ratio
        lines += [
            "",
            f"N = {self.n_samples} samples, T = {self.timesteps} steps per sample (whole window, latency padding "
            f"included); input spikes per sample: {t['input_spikes_per_sample']:.1f}",
            f"Energy per inference: SNN {self.energy_nj:.4g} nJ, ANN baseline {self.ann_energy_nj:.4g} nJ, "
            f"ANN/SNN = {ratio:.3g}" if ratio is not None else
            f"Energy per inference: SNN 0 nJ, ANN baseline {self.ann_energy_nj:.4g} nJ",
            "",
            "Sources:",
        ]
        for label, model in (("SNN", self.snn_model), ("ANN", self.ann_model)):
            consts = ", ".join(f"{op} {e:g} pJ" for op, e in model.pj_per_op.items())
            lines += [f"  {label} [{model.name}] {consts}", f"    {model.source}"]
            if model.notes:
                lines.append(f"    Note: {model.notes}")
        lines.append("  Synops: every presynaptic spike x its exact fan-out (zero weights counted; "
                     "'eff.' skips them). Active update: a synaptic event arrived that step.")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Structural quantities of one layer


def layer_type(layer) -> str:
    """``"input"``, ``"dense"``, ``"conv"``, ``"pool"`` or ``"flatten"``."""
    for cls, name in ((InputLayer, "input"), (DenseLayer, "dense"), (ConvLayer, "conv"),
                      (PoolLayer, "pool"), (FlattenLayer, "flatten")):
        if isinstance(layer, cls):
            return name
    raise TypeError(f"unknown layer type {type(layer).__name__}")


def ann_macs(layer) -> int:
    """MACs per sample of ``layer`` in a non-spiking ANN of the same architecture.

    Dense ``in·out``; conv ``kH·kW·(C_in/groups)·C_out·H_out·W_out``; pool
    ``kH·kW·C·H_out·W_out``; input and flatten layers 0.
    """
    if isinstance(layer, DenseLayer):
        return int(layer.weight.shape[0] * layer.weight.shape[1])
    if isinstance(layer, ConvLayer):
        c_out, c_in_g, kh, kw = layer.weight.shape
        _, h, w = layer.out_shape
        return int(kh * kw * c_in_g * c_out * h * w)
    if isinstance(layer, PoolLayer):
        kh, kw = layer.kernel
        c, h, w = layer.out_shape
        return int(kh * kw * c * h * w)
    return 0


def _conv_params(layer, effective: bool) -> tuple[torch.Tensor, int]:
    """Connection-mask weight (C_out, C_in/groups, kH, kW) float64 and groups of a conv/pool.

    The mask is 1 for every synapse, or (``effective``) 1 only where the stored weight ≠ 0.
    """
    if isinstance(layer, ConvLayer):
        w = layer.weight != 0 if effective else np.ones(layer.weight.shape, dtype=bool)
        return torch.as_tensor(w, dtype=torch.float64), layer.groups
    c = layer.in_shape[0]
    w = layer.weight != 0 if effective else np.ones(layer.weight.shape, dtype=bool)
    w = np.broadcast_to(w, (c, 1) + w.shape)
    return torch.as_tensor(np.ascontiguousarray(w), dtype=torch.float64), c


def fanout_map(layer, effective: bool = False) -> np.ndarray:
    """Exact fan-out of every presynaptic position into ``layer``, shape ``layer.in_shape``.

    ``f[j]`` = number of (output neuron, kernel tap) pairs that read input position j:

    - dense: ``out_features`` for every input (effective: non-zeros of column j of W);
    - conv / pool: ``f = ∂/∂x Σ_outputs conv(x, M)`` with M the connection mask (all ones,
      or 1 where the weight is non-zero), i.e. the transposed convolution of ones. This
      includes borders, zero padding (padded taps read no neuron and are not synapses),
      stride, dilation, groups and the per-channel pool kernel.

    Returns an int64 array.
    """
    if isinstance(layer, DenseLayer):
        if effective:
            return (layer.weight != 0).sum(axis=0).astype(np.int64)
        return np.full(layer.in_shape, layer.weight.shape[0], dtype=np.int64)
    if not isinstance(layer, (ConvLayer, PoolLayer)):
        raise TypeError(f"{type(layer).__name__} has no synapses")
    mask, groups = _conv_params(layer, effective)
    x = torch.ones((1,) + tuple(layer.in_shape), dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, mask, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=groups)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return grad[0].round().to(torch.int64).numpy()


def _receives_events(layer, pre: np.ndarray) -> int:
    """Number of (sample, neuron, step) updates of ``layer`` that receive ≥ 1 synaptic event.

    ``pre``: presynaptic spikes (N, *in_shape, T). The event at step t comes from spikes at
    t - 1 through any synapse (zero weights included), so only steps 1..T-1 can be active.
    """
    n, t = pre.shape[0], pre.shape[-1]
    if t < 2:
        return 0
    if isinstance(layer, DenseLayer):
        # every output is connected to every input: active iff any input spiked at t-1
        any_spike = pre.reshape(n, -1, t)[..., :-1].any(axis=1)  # (N, T-1)
        return int(any_spike.sum()) * int(layer.weight.shape[0])
    # Every output channel of a group reads all input channels of that group through the
    # same spatial taps, so "some connected input spiked at t-1" is the OR over the group's
    # input channels, then an OR over the kH x kW (dilated, strided, zero-padded) window,
    # counted once per output channel of the group. Time stays the last axis throughout.
    if isinstance(layer, ConvLayer):
        groups, per_group = layer.groups, layer.weight.shape[0] // layer.groups
    else:  # pool: depthwise, one channel per group
        groups, per_group = layer.in_shape[0], 1
    c_in, h, w = layer.in_shape
    chunk = max(1, _CHUNK_ELEMENTS // ((t - 1) * c_in * h * w))
    active = 0
    for start in range(0, n, chunk):
        s = pre[start:start + chunk, ..., :-1]
        b = s.shape[0]
        any_in = s.reshape(b, groups, c_in // groups, h, w, t - 1).any(axis=2)
        active += int(np.count_nonzero(window_any(any_in, layer.kernel, layer.stride, layer.padding,
                                                  layer.dilation))) * per_group
    return active


def window_any(s: np.ndarray, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple) -> np.ndarray:
    """OR of ``s`` over every conv window: (B, C, H, W, T) bool → (B, C, H_out, W_out, T) bool.

    ``out[b, c, oy, ox, t] = OR_{ky, kx} s[b, c, oy·sy - py + ky·dy, ox·sx - px + kx·dx, t]``
    with zero padding, computed separably (rows, then columns) with strided slices.
    """
    (kh, kw), (sy, sx), (py, px), (dy, dx) = kernel, stride, padding, dilation
    s = np.pad(np.asarray(s, dtype=bool), ((0, 0), (0, 0), (py, py), (px, px), (0, 0)))
    h_out = (s.shape[2] - dy * (kh - 1) - 1) // sy + 1
    w_out = (s.shape[3] - dx * (kw - 1) - 1) // sx + 1
    rows = np.zeros(s.shape[:2] + (h_out, s.shape[3], s.shape[4]), dtype=bool)
    for ky in range(kh):
        rows |= s[:, :, ky * dy: ky * dy + sy * (h_out - 1) + 1: sy]
    out = np.zeros(s.shape[:2] + (h_out, w_out, s.shape[4]), dtype=bool)
    for kx in range(kw):
        out |= rows[:, :, :, kx * dx: kx * dx + sx * (w_out - 1) + 1: sx]
    return out


# ---------------------------------------------------------------------------------------
# The accounting of a run


def _is_binary(x: np.ndarray) -> bool:
    if x.dtype == bool:
        return True
    if x.dtype.kind in "ui":
        return bool(x.max() <= 1 and (x.dtype.kind == "u" or x.min() >= 0))
    return bool(((x == 0) | (x == 1)).all())


def _spike_counts(s: np.ndarray, n: int, t: int) -> np.ndarray:
    """Spikes per presynaptic position summed over samples and steps: (N, ..., T) → (P,) int64."""
    # summing the sample axis first keeps the inner loop contiguous (several times faster)
    return s.reshape(n, -1, t).sum(axis=0, dtype=np.int64).sum(axis=-1)


def _check_arrays(net: Network, x: np.ndarray, result: SimResult) -> tuple[int, int]:
    expected = tuple(net.input.shape)
    if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected:
        raise InputError(f"input has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, expected))}, T)")
    n, t = int(x.shape[0]), int(x.shape[-1])
    if n < 1 or t < 1:
        raise InputError(f"input of shape {tuple(x.shape)} holds no sample or no time step")
    if net.input.neuron is None and not _is_binary(x):
        raise InputError("the input layer has no neuron, so x must hold binary spikes (0/1)")
    for i, layer in net.neuron_layers:
        if i not in result.spikes:
            raise InputError(f"the run did not record layer {i} ({layer_type(layer)}): "
                             f"simulate with record_all=True")
        want = (n,) + tuple(layer.out_shape) + (t,)
        got = tuple(np.shape(result.spikes[i]))
        if got != want:
            raise InputError(f"spikes of layer {i} have shape {got}, expected {want} (from x and the network)")
    return n, t


def account(net: Network, x: np.ndarray, result: SimResult,
            snn_model: EnergyModel = LOIHI1_DAVIES2018,
            ann_model: EnergyModel = ANN_FP32_HOROWITZ2014) -> Accounting:
    """Count spikes, synaptic ops and neuron updates of a run, and price them.

    Args:
        net: the network that was simulated.
        x: the input of the run, (N, *input_shape, T): binary spikes when the input layer
            has no neuron, otherwise the integers driving the input neuron.
        result: the run's spikes with every neuron layer recorded (``record_all=True``),
            each (N, *layer.out_shape, T).
        snn_model: energy per op of the SNN (default Loihi 1, Davies et al. 2018).
        ann_model: energy per MAC of the ANN baseline (default FP32, Horowitz 2014).

    Returns:
        an :class:`Accounting`; energies are nJ per inference (mean over the N samples).
    """
    x = np.asarray(x)
    n, t = _check_arrays(net, x, result)
    layers = []
    pre: Optional[np.ndarray] = None if net.input.neuron is not None else x
    input_spikes = int(x.sum(dtype=np.int64)) if net.input.neuron is None else 0
    for i, layer in enumerate(net.layers):
        if isinstance(layer, FlattenLayer):
            pre = pre.reshape(n, -1, t)
            continue
        if isinstance(layer, InputLayer) and layer.neuron is None:
            continue
        spikes = np.asarray(result.spikes[i])
        neurons = int(np.prod(layer.out_shape))
        if isinstance(layer, InputLayer):
            synops = eff = 0
            active = int(np.count_nonzero(x))
        else:
            counts = _spike_counts(pre, n, t)  # spikes per presynaptic position
            synops = int(counts @ fanout_map(layer).ravel())
            eff = int(counts @ fanout_map(layer, effective=True).ravel())
            active = _receives_events(layer, pre)
        la = LayerAccount(index=i, name=f"{i}:{layer_type(layer)}", type=layer_type(layer),
                          shape=tuple(layer.out_shape), neurons=neurons, n_samples=n, timesteps=t,
                          spikes=int(_spike_counts(spikes, n, t).sum()), synops=synops, effective_synops=eff,
                          active_updates=active, inactive_updates=n * neurons * t - active,
                          ann_macs=ann_macs(layer))
        counts_per_sample = la.op_counts()
        snn_ops = dict(counts_per_sample, mac=0.0)  # an SNN model never pays for ANN MACs
        la.energy_breakdown_nj = {op: e * _PJ_TO_NJ for op, e in snn_model.breakdown_pj(snn_ops).items()}
        la.energy_nj = snn_model.energy_pj(snn_ops) * _PJ_TO_NJ
        la.ann_energy_nj = ann_model.energy_pj({"mac": la.ann_macs}) * _PJ_TO_NJ
        layers.append(la)
        pre = spikes
    return Accounting(layers=layers, n_samples=n, timesteps=t, input_spikes=input_spikes,
                      snn_model=snn_model, ann_model=ann_model)
