"""Per-layer and total accounting of one simulated run: spikes, synaptic ops, neuron
updates, spike messages, the MACs of the same architecture run as an ANN, and energy per
inference under two models that papers use, side by side.

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
  connection matrix with every weight replaced by 1 (see :func:`synapse_counts`).
- synaptic ops ``SOP_l = Σ_n Σ_t Σ_j p_l[n, j, t] · f_l[j]`` (dense convention: zero
  weights count as synapses); the effective count uses ``f_l^eff[j]``, the fan-out through
  non-zero weights only: for dense layers the weights Lava's Dense really multiplies with
  (``snn2loihi.sim.synapses.dense_weights(W).effective``, after netx's rescale and Lava's
  clip/truncation), for conv/pool the stored weights (Lava uses them unchanged).
- neuron updates: every neuron is updated every step, ``U_l = N · neurons_l · T``; an
  update at step t is *active* when the neuron received at least one synaptic event at
  t, i.e. some presynaptic neuron in its receptive field spiked at t - 1 (Lava's one-step
  synaptic delay; nothing arrives at t = 0). Neurons of an input layer driven through
  the input port are active at t when their input ``x[n, i, t]`` is non-zero (no delay).
  ``inactive = U_l - active``.
- spike messages (only with a core mapping from :mod:`snn2loihi.planning`): a spike is
  sent once to every core that holds at least one of its postsynaptic neurons,
  ``MSG_l = Σ_n Σ_t Σ_j p_l[n, j, t] · cores_l[j]``.
- ANN MACs per sample of the same architecture (no time dimension): dense ``in·out``,
  conv ``kH·kW·(C_in/groups)·C_out·H_out·W_out``, pool ``kH·kW·C·H_out·W_out``.
- residual layers (a :class:`~snn2loihi.ir.Skip` from an earlier layer): the skip is a
  second synapse group into the same neurons; its synops, MACs and messages are added to
  the layer's, and an update is active when either group delivers an event.

Energy per inference (mean over the N samples), in nanojoules (e in pJ, × 1e-3 → nJ):

- event model (Loihi), an :class:`EnergyModel` such as ``LOIHI1_DAVIES2018``::

      E_SNN,l = Σ_op e_op · count_op,l / N     e.g. 23.6·SOP + 81·active + 52·inactive

  The inactive-update term is a floor that does not vanish at zero activity.
- compute-only model (the formula of Spikformer, syops-counter, SpikingJelly; Horowitz
  constants E_MAC, E_AC of a preset such as ``ANN_FP32_HOROWITZ2014``)::

      E_cmp = E_MAC · FLOPs_1 + E_AC · Σ_{l≥2} SOP_l / N        (layer 1 as MACs)

  where FLOPs_1 is the ANN MAC count of the first synapse layer (papers assume it sees
  analog, direct-encoded input) and SOP_l the dense (or effective) synaptic ops.
- ANN baseline: ``E_ANN,l = E_MAC · MAC_l``.

Loihi 2 has no published per-operation energies: ``LOIHI2_MEASURED_ONLY`` refuses to
price anything (energies are ``None``); :func:`measured_energy` turns a hardware power
measurement (lava-loihi's profiler) into energy per inference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, PoolLayer
from .sim.emulator import SimResult

if TYPE_CHECKING:  # planning imports this module's connectivity helpers
    from .planning import Plan

#: Unit of every energy value this module reports: nanojoules per inference (per sample).
ENERGY_UNIT = "nJ per inference (mean over samples)"
_PJ_TO_NJ = 1e-3

#: Operation counts an :class:`EnergyModel` may price, all per sample (per inference):
#: ``synop`` dense synaptic ops, ``synop_effective`` synaptic ops through non-zero
#: weights, ``active_update`` / ``inactive_update`` neuron updates, ``spike`` spikes
#: emitted, ``spike_message`` spikes delivered to a destination core, ``mac`` / ``ac``
#: multiply-accumulates / accumulates of the compute-only models (ANN baseline and the
#: papers' SNN formula).
OPS = ("synop", "synop_effective", "active_update", "inactive_update", "spike", "spike_message", "mac", "ac")

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
        measured_only: no per-op energies exist for this chip; it prices nothing and
            reports ``None`` (energy must come from a hardware measurement).
    """

    name: str
    pj_per_op: Mapping[str, float]
    source: str
    notes: str = ""
    measured_only: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.pj_per_op) - set(OPS))
        if unknown:
            raise ValueError(f"energy model {self.name!r}: unknown operations {unknown} (known: {', '.join(OPS)})")
        if any(not math.isfinite(v) or v < 0 for v in self.pj_per_op.values()):
            raise ValueError(f"energy model {self.name!r}: energies must be finite and >= 0 pJ")
        if self.measured_only and self.pj_per_op:
            raise ValueError(f"energy model {self.name!r}: a measured-only model cannot price operations")
        object.__setattr__(self, "pj_per_op", MappingProxyType(dict(self.pj_per_op)))

    def energy_pj(self, counts: Mapping[str, float]) -> Optional[float]:
        """``Σ_op pj_per_op[op] · counts[op]`` in pJ; ops absent from ``counts`` count 0.
        None for a measured-only model."""
        if self.measured_only:
            return None
        return float(sum(e * float(counts.get(op, 0)) for op, e in self.pj_per_op.items()))

    def breakdown_pj(self, counts: Mapping[str, float]) -> dict[str, float]:
        """Energy of each priced op in pJ: ``{op: pj_per_op[op] · counts[op]}``."""
        return {op: e * float(counts.get(op, 0)) for op, e in self.pj_per_op.items()}

    def formula(self) -> str:
        """The model as a sum, e.g. ``"23.6 pJ x synop + 81 pJ x active_update"``."""
        if self.measured_only:
            return "not priced: per-operation energies are unpublished (measure on hardware)"
        return " + ".join(f"{e:g} pJ x {op}" for op, e in self.pj_per_op.items())

    def to_dict(self) -> dict:
        return {"name": self.name, "pj_per_op": dict(self.pj_per_op), "unit": "pJ per op",
                "source": self.source, "notes": self.notes, "measured_only": self.measured_only}


_DAVIES = ("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
           "IEEE Micro 38(1):82-99, 2018, Table 2")
_HOROWITZ = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
             "45 nm 0.9 V")
_HOROWITZ_NOTES = ("Arithmetic only, 45 nm: memory accesses (SRAM 10-100 pJ, DRAM 1.3-2.6 nJ per 64 bit) "
                   "are not included.")

#: Loihi 1 event model. Davies et al., Table 2 (pre-silicon).
LOIHI1_DAVIES2018 = EnergyModel(
    name="LOIHI1_DAVIES2018",
    pj_per_op={"synop": 23.6, "active_update": 81.0, "inactive_update": 52.0},
    source=f"{_DAVIES}: 23.6 pJ per synaptic spike op (min), 81 pJ per active / 52 pJ per inactive neuron update",
    notes=("Loihi 1, 14 nm; Table 2 gives pre-silicon (SDF + SPICE) figures, not measured energy. "
           "Spike routing (1.7 pJ per spike within a tile, 3.0/4.0 pJ per E-W/N-S tile hop), "
           "barrier synchronisation, x86 cores, I/O and static (leakage) power are not included."),
)

#: The same with every spike message priced as a within-tile spike (a lower bound on routing).
LOIHI1_DAVIES2018_ROUTING = EnergyModel(
    name="LOIHI1_DAVIES2018_ROUTING",
    pj_per_op={"synop": 23.6, "active_update": 81.0, "inactive_update": 52.0, "spike_message": 1.7},
    source=(f"{_DAVIES}: 23.6 pJ per synaptic spike op, 81/52 pJ per active/inactive neuron update, "
            "1.7 pJ per spike within a tile"),
    notes=("Loihi 1 pre-silicon figures. Every spike message (one per destination core, from the core "
           "mapping of `snn2loihi plan`) is priced as a within-tile spike: tile hops (3.0/4.0 pJ each) "
           "depend on placement and are left out, so routing energy is a lower bound. Static power, "
           "barrier synchronisation and I/O are not included."),
)

#: Loihi 2: no per-op energies exist in any Intel publication; energy must be measured.
LOIHI2_MEASURED_ONLY = EnergyModel(
    name="LOIHI2_MEASURED_ONLY",
    pj_per_op={},
    source=("Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021: "
            "no per-operation energies are published; Intel reports Loihi 2 energy measured with "
            "lava-loihi's Loihi2Power profiler (lava-dl tutorials netx/pilotnet_sdnn/benchmark.ipynb)"),
    notes=("Deliberately unpriced: secondary sources quote ~1 pJ per synop without a primary source. "
           "Run `snn2loihi deploy --profile` on a Loihi 2 system to measure power, then energy per "
           "inference = (P_total - P_static) x time per step x steps (see measured_energy)."),
    measured_only=True,
)

#: ANN baseline / compute-only SNN model, FP32: one multiply (3.7 pJ) + add (0.9 pJ) per MAC.
ANN_FP32_HOROWITZ2014 = EnergyModel(
    name="ANN_FP32_HOROWITZ2014",
    pj_per_op={"mac": 4.6, "ac": 0.9},
    source=f"{_HOROWITZ}: FP32 mult 3.7 pJ + FP32 add 0.9 pJ = 4.6 pJ per MAC, 0.9 pJ per AC",
    notes=_HOROWITZ_NOTES,
)

#: FP16: mult 1.1 + add 0.4 pJ.
ANN_FP16_HOROWITZ2014 = EnergyModel(
    name="ANN_FP16_HOROWITZ2014",
    pj_per_op={"mac": 1.5, "ac": 0.4},
    source=f"{_HOROWITZ}: FP16 mult 1.1 pJ + FP16 add 0.4 pJ = 1.5 pJ per MAC, 0.4 pJ per AC",
    notes=_HOROWITZ_NOTES,
)

#: INT8: mult 0.2 + add 0.03 pJ.
ANN_INT8_HOROWITZ2014 = EnergyModel(
    name="ANN_INT8_HOROWITZ2014",
    pj_per_op={"mac": 0.23, "ac": 0.03},
    source=f"{_HOROWITZ}: INT8 mult 0.2 pJ + INT8 add 0.03 pJ = 0.23 pJ per MAC, 0.03 pJ per AC",
    notes=_HOROWITZ_NOTES,
)

#: Event-model presets by CLI name, with the chip whose core mapping gives spike messages.
SNN_PRESETS = {"loihi1": LOIHI1_DAVIES2018, "loihi1-routing": LOIHI1_DAVIES2018_ROUTING,
               "loihi2": LOIHI2_MEASURED_ONLY}
PRESET_CHIPS = {"loihi1": "loihi1", "loihi1-routing": "loihi1", "loihi2": "loihi2"}
#: Compute-only / ANN presets by CLI name.
ANN_PRESETS = {"fp32": ANN_FP32_HOROWITZ2014, "fp16": ANN_FP16_HOROWITZ2014, "int8": ANN_INT8_HOROWITZ2014}


def measured_energy(total_power_w: float, static_power_w: float, time_per_step_s: float,
                    steps_per_inference: int) -> dict:
    """Energy per inference from a hardware power measurement (how Intel reports Loihi 2).

    ``E_total = P_total · t_step · T`` and ``E_dynamic = (P_total - P_static) · t_step · T``
    (lava-dl's ``pilotnet_sdnn/benchmark.ipynb``), returned in nJ per inference.

    Raises:
        InputError: a negative or non-finite figure, or static power above total power.
    """
    values = (total_power_w, static_power_w, time_per_step_s, steps_per_inference)
    if any(not math.isfinite(v) or v < 0 for v in values) or static_power_w > total_power_w:
        raise InputError(f"measured power/time must be finite, >= 0 and static <= total; found {values}")
    seconds = time_per_step_s * steps_per_inference
    return {"total_energy_nj": total_power_w * seconds * 1e9,
            "dynamic_energy_nj": (total_power_w - static_power_w) * seconds * 1e9,
            "total_power_w": total_power_w, "static_power_w": static_power_w,
            "time_per_step_s": time_per_step_s, "steps_per_inference": steps_per_inference,
            "unit": ENERGY_UNIT}


CONVENTIONS = {
    "fan_out": ("Synaptic ops = sum over every presynaptic spike of its real fan-out into the layer: "
                "the number of (output neuron, kernel tap) pairs whose receptive field contains the "
                "spiking position, computed exactly per input position (conv borders, padding, stride, "
                "dilation and groups included; dense: out_features; pool: the per-channel kernel). "
                "'synops' counts zero weights as synapses (dense convention); 'effective_synops' "
                "counts only synapses with a non-zero weight as Lava uses it (dense: netx's rescaled "
                "weights after Lava Dense's clip/truncation; conv/pool: the stored weights)."),
    "synops_window": ("Every presynaptic spike inside the simulated window is counted, including spikes "
                      "at the last step whose events would be delivered one step after the window."),
    "active_inactive": ("Every neuron is updated every step (neuron updates = neurons x T per sample). An "
                        "update at step t is active when the neuron received at least one synaptic event "
                        "at t, i.e. a presynaptic neuron connected to it (zero weights included) spiked at "
                        "t-1 (one-step synaptic delay; nothing arrives at t=0). Input-layer neurons driven "
                        "by the input port are active when their input is non-zero at t. Bias-only drive "
                        "does not make an update active. All other updates are inactive."),
    "spike_messages": ("With a core mapping (snn2loihi plan), a spike is sent once to each core holding at "
                       "least one of its postsynaptic neurons; messages = sum of spikes x destination cores. "
                       "Input spikes from the host count too; the input neuron's currents are not messages."),
    "timesteps": ("T is the whole simulated window per sample, including any zero steps padded to let the "
                  "network's latency (one step per synapse layer) flush out."),
    "per_sample": ("Counts named '*_per_sample', 'ann_macs' and every energy are per inference: the mean "
                   "over the N samples. 'spikes', 'synops', 'effective_synops', 'spike_messages', "
                   "'active_updates' and 'inactive_updates' are totals over all samples. "
                   "firing_rate = spikes / (N x neurons x T)."),
    "compute_only": ("E_cmp = E_MAC x FLOPs_1 + E_AC x sum over later layers of synops per inference (the "
                     "formula of Spikformer, syops-counter and SpikingJelly): the first synapse layer is "
                     "priced as the ANN's MACs (papers assume analog, direct-encoded input), every later "
                     "synaptic op as one accumulate; neuron updates, memory and routing cost nothing. "
                     "'compute_only_effective' uses the effective synops instead."),
    "ann_baseline": ("ANN MACs per sample: dense in x out; conv kH x kW x (C_in/groups) x C_out x H_out x "
                     "W_out; pool kH x kW x C x H_out x W_out; input layers and neuron updates cost nothing."),
}


def _opt(value, fmt: str = ".4g") -> str:
    """Format a number, or ``"n/a"`` for None."""
    return "n/a" if value is None else format(value, fmt)


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
        spike_messages: spike messages delivered into this layer's cores, total over
            samples; None without a core mapping.
        energy_nj: event-model SNN energy of this layer, nJ per inference (None when the
            model is measured-only).
        ann_energy_nj: ANN energy of this layer, nJ per inference.
        compute_energy_nj: compute-only SNN energy (E_MAC x MACs for the first synapse
            layer, E_AC x synops after it), nJ per inference.
        compute_energy_effective_nj: the same with effective synops.
        energy_breakdown_nj: event-model energy per priced op, nJ per inference.
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
    spike_messages: Optional[int] = None
    energy_nj: Optional[float] = 0.0
    ann_energy_nj: float = 0.0
    compute_energy_nj: float = 0.0
    compute_energy_effective_nj: float = 0.0
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
    def spike_messages_per_sample(self) -> Optional[float]:
        return None if self.spike_messages is None else self.spike_messages / self.n_samples

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
        """Per-sample counts of the event-model ops (the input of an :class:`EnergyModel`).

        ``spike_message`` is 0 without a core mapping; ``mac``/``ac`` are the compute-only
        model's and are not listed (see :func:`account`)."""
        return {"synop": self.synops_per_sample, "synop_effective": self.effective_synops_per_sample,
                "active_update": self.active_updates_per_sample,
                "inactive_update": self.inactive_updates_per_sample,
                "spike": self.spikes_per_sample, "spike_message": self.spike_messages_per_sample or 0.0}

    def to_dict(self) -> dict:
        return {
            "index": self.index, "name": self.name, "type": self.type, "shape": list(self.shape),
            "neurons": self.neurons, "spikes": self.spikes, "spikes_per_sample": self.spikes_per_sample,
            "firing_rate": self.firing_rate, "synops": self.synops, "synops_per_sample": self.synops_per_sample,
            "effective_synops": self.effective_synops,
            "effective_synops_per_sample": self.effective_synops_per_sample,
            "spike_messages": self.spike_messages, "spike_messages_per_sample": self.spike_messages_per_sample,
            "neuron_updates_per_sample": self.neuron_updates_per_sample,
            "active_updates": self.active_updates, "inactive_updates": self.inactive_updates,
            "active_updates_per_sample": self.active_updates_per_sample,
            "inactive_updates_per_sample": self.inactive_updates_per_sample,
            "ann_macs": self.ann_macs, "energy_nj": self.energy_nj, "ann_energy_nj": self.ann_energy_nj,
            "compute_energy_nj": self.compute_energy_nj,
            "compute_energy_effective_nj": self.compute_energy_effective_nj,
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
        snn_model: the event model's constants (Loihi).
        ann_model: E_MAC / E_AC of the ANN baseline and of the compute-only SNN formula.
        chip: name of the chip whose core mapping gave the spike messages, or None.
        backend: what produced the spikes (``"emulator"``, ``"lava"``, or ``""``).
    """

    layers: list
    n_samples: int
    timesteps: int
    input_spikes: int
    snn_model: EnergyModel
    ann_model: EnergyModel
    chip: Optional[str] = None
    backend: str = ""

    def _sum(self, attr: str):
        values = [getattr(layer, attr) for layer in self.layers]
        return None if any(v is None for v in values) else sum(values)

    @property
    def energy_nj(self) -> Optional[float]:
        """Total event-model SNN energy, nJ per inference (None for a measured-only model)."""
        total = self._sum("energy_nj")
        return None if total is None else float(total)

    @property
    def ann_energy_nj(self) -> float:
        """Total ANN-baseline energy, nJ per inference."""
        return float(self._sum("ann_energy_nj"))

    @property
    def compute_energy_nj(self) -> float:
        """Total compute-only SNN energy (dense synops), nJ per inference."""
        return float(self._sum("compute_energy_nj"))

    @property
    def compute_energy_effective_nj(self) -> float:
        """Total compute-only SNN energy (effective synops), nJ per inference."""
        return float(self._sum("compute_energy_effective_nj"))

    @property
    def ratio(self) -> Optional[float]:
        """E_ANN / E_SNN of the event model (> 1: the SNN estimate is cheaper); None if
        E_SNN is 0 or unpriced."""
        snn = self.energy_nj
        return self.ann_energy_nj / snn if snn else None

    @property
    def compute_ratio(self) -> Optional[float]:
        """E_ANN / E_cmp (compute-only model); None if E_cmp is 0."""
        cmp = self.compute_energy_nj
        return self.ann_energy_nj / cmp if cmp > 0 else None

    def total(self) -> dict:
        """Network totals (same keys as a layer where they make sense)."""
        n, t = self.n_samples, self.timesteps
        neurons = self._sum("neurons")
        spikes, synops, eff = self._sum("spikes"), self._sum("synops"), self._sum("effective_synops")
        active, inactive = self._sum("active_updates"), self._sum("inactive_updates")
        messages = self._sum("spike_messages")
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
            "spike_messages": messages, "spike_messages_per_sample": None if messages is None else messages / n,
            "neuron_updates_per_sample": int(neurons * t),
            "active_updates": int(active), "inactive_updates": int(inactive),
            "active_updates_per_sample": active / n, "inactive_updates_per_sample": inactive / n,
            "ann_macs": int(self._sum("ann_macs")),
            "energy_nj": self.energy_nj, "ann_energy_nj": self.ann_energy_nj,
            "compute_energy_nj": self.compute_energy_nj,
            "compute_energy_effective_nj": self.compute_energy_effective_nj,
            "energy_breakdown_nj": breakdown,
        }

    def conventions(self) -> dict:
        """:data:`CONVENTIONS` plus the event model of this accounting spelled out."""
        snn, ann = self.snn_model, self.ann_model
        event = (f"E_SNN [{snn.name}] = {snn.formula()} per inference. "
                 + ("Loihi 1 constants are pre-silicon estimates (Davies et al. 2018, Table 2); static power, "
                    "I/O and memory traffic are not modelled, so this estimates dynamic core energy, not a "
                    "measurement. " if snn.name.startswith("LOIHI1") else f"{snn.notes} ")
                 + f"E_ANN [{ann.name}] = {ann.pj_per_op.get('mac', 0):g} pJ x MACs of the same architecture "
                   "as a non-spiking ANN. Energies in nJ per inference; ratio = E_ANN / E_SNN.")
        return dict(CONVENTIONS, energy=event)

    def to_dict(self) -> dict:
        """JSON-ready summary.

        Keys: ``n_samples``, ``timesteps``, ``backend``, ``chip``, ``layers`` (list of
        per-layer dicts), ``total``, ``energy`` {``unit``, ``per_layer``, ``total``,
        ``ann_baseline``, ``ratio``, ``compute_only``, ``constants``}, ``conventions``.
        """
        total = self.total()
        return {
            "n_samples": self.n_samples,
            "timesteps": self.timesteps,
            "backend": self.backend,
            "chip": self.chip,
            "layers": [layer.to_dict() for layer in self.layers],
            "total": total,
            "energy": {
                "unit": ENERGY_UNIT,
                "per_layer": [{"name": layer.name, "snn_energy_nj": layer.energy_nj,
                               "ann_energy_nj": layer.ann_energy_nj,
                               "compute_only_nj": layer.compute_energy_nj,
                               "compute_only_effective_nj": layer.compute_energy_effective_nj,
                               "snn_breakdown_nj": dict(layer.energy_breakdown_nj)} for layer in self.layers],
                "total": {"snn_energy_nj": self.energy_nj, "snn_breakdown_nj": total["energy_breakdown_nj"]},
                "event_model": {"name": self.snn_model.name, "formula": self.snn_model.formula(),
                                "measured_only": self.snn_model.measured_only},
                "ann_baseline": {"ann_energy_nj": self.ann_energy_nj, "macs_per_sample": total["ann_macs"]},
                "ratio": self.ratio,
                "ratio_definition": "ann_energy_nj / snn_energy_nj",
                "compute_only": {
                    "model": self.ann_model.name,
                    "formula": (f"{self.ann_model.pj_per_op.get('mac', 0):g} pJ x FLOPs_1 + "
                                f"{self.ann_model.pj_per_op.get('ac', 0):g} pJ x synops of later layers"),
                    "first_layer": "MACs",
                    "energy_nj": self.compute_energy_nj,
                    "energy_effective_nj": self.compute_energy_effective_nj,
                    "ratio": self.compute_ratio,
                },
                "constants": {"snn": self.snn_model.to_dict(), "ann": self.ann_model.to_dict()},
            },
            "conventions": self.conventions(),
        }

    def format_table(self) -> str:
        """Human-readable per-layer table, totals, ratios, and the energy sources below it."""
        head = ("layer", "shape", "neurons", "spk/smp", "rate", "synops/smp", "eff.syn/smp", "msgs/smp",
                "active/smp", "inactive/smp", "ANN MACs", "E_SNN nJ", "E_cmp nJ", "E_ANN nJ")

        def row(name, shape, d) -> tuple:
            return (name, shape, f"{d['neurons']}", f"{d['spikes_per_sample']:.1f}", f"{d['firing_rate']:.4f}",
                    f"{d['synops_per_sample']:.4g}", f"{d['effective_synops_per_sample']:.4g}",
                    _opt(d["spike_messages_per_sample"]), f"{d['active_updates_per_sample']:.4g}",
                    f"{d['inactive_updates_per_sample']:.4g}", f"{d['ann_macs']}", _opt(d["energy_nj"]),
                    f"{d['compute_energy_nj']:.4g}", f"{d['ann_energy_nj']:.4g}")

        rows = [head] + [row(la.name, "x".join(map(str, la.shape)), la.to_dict()) for la in self.layers]
        t = self.total()
        rows.append(row("total", "", t))
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        fmt = lambda r: "  ".join(v.rjust(w) if c else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths)))
        lines = [fmt(rows[0]), "-" * len(fmt(rows[0]))] + [fmt(r) for r in rows[1:-1]]
        lines += ["-" * len(fmt(rows[0])), fmt(rows[-1])]
        snn = self.energy_nj
        lines += [
            "",
            f"N = {self.n_samples} samples{f' ({self.backend})' if self.backend else ''}, T = {self.timesteps} "
            f"steps per sample (whole window, latency padding included); input spikes per sample: "
            f"{t['input_spikes_per_sample']:.1f}"
            + (f"; spike messages from the {self.chip} core mapping" if self.chip else ""),
            "Energy per inference (nJ):",
            f"  event model   E_SNN = {_opt(snn)}  [{self.snn_model.name}]"
            + (f"  ANN/SNN = {self.ratio:.3g}" if self.ratio is not None else ""),
            f"  compute-only  E_cmp = {self.compute_energy_nj:.4g} (effective synops: "
            f"{self.compute_energy_effective_nj:.4g})  [{self.ann_model.name}, layer 1 as MACs]"
            + (f"  ANN/SNN = {self.compute_ratio:.3g}" if self.compute_ratio is not None else ""),
            f"  ANN baseline  E_ANN = {self.ann_energy_nj:.4g}  [{self.ann_model.name}]",
            "",
            "Sources:",
        ]
        for label, model in (("SNN", self.snn_model), ("ANN", self.ann_model)):
            consts = ", ".join(f"{op} {e:g} pJ" for op, e in model.pj_per_op.items()) or "no constants"
            lines += [f"  {label} [{model.name}] {consts}", f"    {model.source}"]
            if model.notes:
                lines.append(f"    Note: {model.notes}")
        lines.append("  Synops: every presynaptic spike x its exact fan-out (zero weights counted; "
                     "'eff.' skips them). Active update: a synaptic event arrived that step.")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Structural quantities of one layer


def layer_type(layer) -> str:
    """``"input"``, ``"dense"``, ``"conv"``, ``"pool"`` or ``"flatten"``.

    Raises:
        InputError: a layer type this module does not know (e.g. one added to the IR
            later); the message names the type.
    """
    for cls, name in ((InputLayer, "input"), (DenseLayer, "dense"), (ConvLayer, "conv"),
                      (PoolLayer, "pool"), (FlattenLayer, "flatten")):
        if isinstance(layer, cls):
            return name
    raise InputError(f"layer type {type(layer).__name__} is not supported by the accounting and planning "
                     f"(supported: input, dense, conv, pool, flatten)")


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


def connection_mask(layer, effective: bool = False) -> np.ndarray:
    """Which synapses exist, as a bool array shaped like the weights Lava uses.

    Dense (out, in): all True, or (``effective``) True where the weight Lava's Dense
    multiplies with is non-zero (``dense_weights(W).effective``: netx's rescale, then
    Lava's clip and truncation). Conv (C_out, C_in/groups, kH, kW) and pool (kH, kW):
    all True, or True where the stored weight is non-zero.
    """
    if isinstance(layer, DenseLayer):
        if not effective:
            return np.ones(layer.weight.shape, dtype=bool)
        from .sim.synapses import dense_weights

        return dense_weights(layer.weight).effective != 0
    if isinstance(layer, (ConvLayer, PoolLayer)):
        return layer.weight != 0 if effective else np.ones(layer.weight.shape, dtype=bool)
    raise InputError(f"{layer_type(layer)} layers have no synapses")


def synapse_counts(layer, out_masks: Optional[np.ndarray] = None, effective: bool = False) -> np.ndarray:
    """Synapses from every presynaptic position into selected groups of output neurons.

    ``counts[k, j] = Σ_o out_masks[k, o] · C[o, j]`` with ``C[o, j]`` the number of
    synapses from presynaptic position j to output neuron o (0 or 1 for dense, the
    number of kernel taps of o that read j for conv/pool; zero padding reads no neuron).
    For conv/pool this is the transposed convolution of the mask, computed as
    ``∂/∂x Σ_o m_k[o] · conv(x, C)_o`` (exact: borders, padding, stride, dilation, groups,
    the per-channel pool kernel).

    Args:
        layer: a dense, conv or pool layer.
        out_masks: (K, *out_shape) 0/1 selections of output neurons (e.g. one per core);
            default one group holding every output, giving the fan-out map.
        effective: count only synapses with a non-zero weight (:func:`connection_mask`).

    Returns:
        int64 array (K, *in_shape).
    """
    mask = connection_mask(layer, effective)
    out_shape, in_shape = tuple(layer.out_shape), tuple(layer.in_shape)
    sel = np.ones((1,) + out_shape) if out_masks is None else np.asarray(out_masks, dtype=np.float64)
    if isinstance(layer, DenseLayer):
        counts = sel.reshape(sel.shape[0], -1) @ mask.astype(np.float64)
        return np.rint(counts).astype(np.int64).reshape((sel.shape[0],) + in_shape)
    if isinstance(layer, ConvLayer):
        weight, groups = mask, layer.groups
    else:  # pool: one (kH, kW) kernel per channel, depthwise
        c = in_shape[0]
        weight, groups = np.broadcast_to(mask, (c, 1) + mask.shape), c
    w = torch.as_tensor(np.ascontiguousarray(weight), dtype=torch.float64)
    x = torch.ones((sel.shape[0],) + in_shape, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, w, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=groups)
    (grad,) = torch.autograd.grad((y * torch.as_tensor(sel, dtype=torch.float64)).sum(), x)
    return grad.round().to(torch.int64).numpy()


def fanout_map(layer, effective: bool = False) -> np.ndarray:
    """Exact fan-out of every presynaptic position into ``layer``, shape ``layer.in_shape``.

    ``f[j]`` = number of (output neuron, kernel tap) pairs that read input position j:
    dense ``out_features`` (effective: non-zeros of column j of Lava's weights), conv /
    pool the transposed convolution of ones (:func:`synapse_counts` with one group).
    """
    return synapse_counts(layer, effective=effective)[0]


def _event_mask(layer, pre: np.ndarray) -> np.ndarray:
    """Which outputs of ``layer`` receive ≥ 1 synaptic event at steps 1..T-1.

    ``pre``: presynaptic spikes (B, *in_shape, T) → bool (B, outputs, T-1) (outputs flat,
    C order). The event at step t comes from spikes at t - 1 through any synapse (zero
    weights included). Dense: every output reads every input. Conv/pool: every output
    channel of a group reads all input channels of that group through the same spatial
    taps, so the mask is the OR over the group's input channels, then an OR over the
    kH x kW (dilated, strided, zero-padded) window, repeated for the group's channels.
    """
    b, t = pre.shape[0], pre.shape[-1]
    if isinstance(layer, DenseLayer):
        any_spike = pre.reshape(b, -1, t)[..., :-1].any(axis=1)  # (B, T-1)
        return np.broadcast_to(any_spike[:, None, :], (b, layer.weight.shape[0], t - 1))
    if isinstance(layer, ConvLayer):
        groups, per_group = layer.groups, layer.weight.shape[0] // layer.groups
    else:  # pool: depthwise, one channel per group
        groups, per_group = layer.in_shape[0], 1
    c_in, h, w = layer.in_shape
    any_in = pre[..., :-1].reshape(b, groups, c_in // groups, h, w, t - 1).any(axis=2)
    window = window_any(any_in, layer.kernel, layer.stride, layer.padding, layer.dilation)
    return np.repeat(window, per_group, axis=1).reshape(b, -1, t - 1)


def _receives_events(sources: list) -> int:
    """Number of (sample, neuron, step) updates that receive ≥ 1 synaptic event.

    ``sources``: [(synapse layer, presynaptic spikes (N, *in_shape, T))], every synapse
    group that drives the same neurons (the layer's own and a residual skip); an update is
    active when any of them delivers an event. Only steps 1..T-1 can be active.
    """
    n, t = sources[0][1].shape[0], sources[0][1].shape[-1]
    if t < 2:
        return 0
    per_sample = max(int(np.prod(pre.shape[1:])) + int(np.prod(layer.out_shape)) * t for layer, pre in sources)
    chunk = max(1, _CHUNK_ELEMENTS // per_sample)
    active = 0
    for start in range(0, n, chunk):
        mask = None
        for layer, pre in sources:
            m = _event_mask(layer, pre[start:start + chunk])
            mask = m if mask is None else mask | m
        active += int(np.count_nonzero(mask))
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
            ann_model: EnergyModel = ANN_FP32_HOROWITZ2014,
            plan: Optional["Plan"] = None, backend: str = "") -> Accounting:
    """Count spikes, synaptic ops, neuron updates (and spike messages) of a run, and price them.

    Args:
        net: the network that was simulated.
        x: the input of the run, (N, *input_shape, T): binary spikes when the input layer
            has no neuron, otherwise the integers driving the input neuron.
        result: the run's spikes with every neuron layer recorded (``record_all=True``),
            each (N, *layer.out_shape, T).
        snn_model: event model of the SNN (default Loihi 1, Davies et al. 2018).
        ann_model: E_MAC / E_AC of the ANN baseline and the compute-only SNN formula
            (default FP32, Horowitz 2014).
        plan: a core mapping of ``net`` (:func:`snn2loihi.planning.plan_network`); gives
            the spike messages. Without it they are None (and priced 0).
        backend: label of what produced ``result`` (reported, not used).

    Returns:
        an :class:`Accounting`; energies are nJ per inference (mean over the N samples).
    """
    x = np.asarray(x)
    n, t = _check_arrays(net, x, result)
    layers = []
    pre: Optional[np.ndarray] = None if net.input.neuron is not None else x
    input_spikes = int(x.sum(dtype=np.int64)) if net.input.neuron is None else 0
    first_synaptic = True
    for i, layer in enumerate(net.layers):
        kind = layer_type(layer)
        if isinstance(layer, FlattenLayer):
            pre = pre.reshape(n, -1, t)
            continue
        if isinstance(layer, InputLayer) and layer.neuron is None:
            continue
        spikes = np.asarray(result.spikes[i])
        neurons = int(np.prod(layer.out_shape))
        messages = None if plan is None else 0
        if isinstance(layer, InputLayer):
            synops = eff = macs = 0
            active = int(np.count_nonzero(x))
        else:
            # the layer's own synapses and, for a residual layer, the skip from an earlier layer
            sources = [(layer, pre)]
            if getattr(layer, "skip", None) is not None:
                sources.append((net.skip_synapse(i), np.asarray(result.spikes[layer.skip.source])))
            synops = eff = 0
            for k, (syn, spikes_in) in enumerate(sources):
                counts = _spike_counts(spikes_in, n, t)  # spikes per presynaptic position
                synops += int(counts @ fanout_map(syn).ravel())
                eff += int(counts @ fanout_map(syn, effective=True).ravel())
                if plan is not None:
                    lp = plan.layer(i)
                    messages += int(counts @ (lp.skip_dest_cores if k else lp.in_dest_cores).ravel())
            active = _receives_events(sources)
            macs = sum(ann_macs(syn) for syn, _ in sources)
        la = LayerAccount(index=i, name=f"{i}:{kind}", type=kind, shape=tuple(layer.out_shape), neurons=neurons,
                          n_samples=n, timesteps=t, spikes=int(_spike_counts(spikes, n, t).sum()), synops=synops,
                          effective_synops=eff, active_updates=active, inactive_updates=n * neurons * t - active,
                          ann_macs=macs, spike_messages=messages)
        snn_ops = la.op_counts()
        la.energy_breakdown_nj = {op: e * _PJ_TO_NJ for op, e in snn_model.breakdown_pj(snn_ops).items()}
        energy = snn_model.energy_pj(snn_ops)
        la.energy_nj = None if energy is None else energy * _PJ_TO_NJ
        e_mac, e_ac = ann_model.pj_per_op.get("mac", 0.0), ann_model.pj_per_op.get("ac", 0.0)
        la.ann_energy_nj = e_mac * la.ann_macs * _PJ_TO_NJ
        if not isinstance(layer, InputLayer):
            if first_synaptic:  # papers price layer 1 as the ANN's MACs (analog input)
                la.compute_energy_nj = la.compute_energy_effective_nj = la.ann_energy_nj
                first_synaptic = False
            else:
                la.compute_energy_nj = e_ac * la.synops_per_sample * _PJ_TO_NJ
                la.compute_energy_effective_nj = e_ac * la.effective_synops_per_sample * _PJ_TO_NJ
        layers.append(la)
        pre = spikes
    return Accounting(layers=layers, n_samples=n, timesteps=t, input_spikes=input_spikes,
                      snn_model=snn_model, ann_model=ann_model, chip=None if plan is None else plan.chip.name,
                      backend=backend)
