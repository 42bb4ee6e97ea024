"""Going to the board: the hard-reset export, what it costs, and the Loihi 2 hardware run.

Loihi's stock neuron (Lava's LIF, netx's CUBA) resets v to 0 after a spike. Our soft
reset (``v -= θ``, ``CUBA_SOFT``) runs on Lava's CPU backend through a custom process
model; on the chip it would need a microcoded neuron, which this toolkit does not ship.
The way onto the board is therefore the hard-reset export:

- :func:`to_hard_reset` turns every ``CUBA_SOFT`` layer into stock ``CUBA`` (optionally
  with new thresholds);
- :func:`rebalance_thresholds` picks, layer by layer in network order, the threshold
  ``vth' = round(f · vth)`` (f from a grid ≤ 1) whose hard-reset spikes best match the
  soft-reset network's spike counts on calibration data: a hard reset throws away the
  charge above threshold, so the same threshold fires less;
- :func:`compare_resets` reports, on the emulator, the accuracy (or output agreement)
  of the soft network, the plain hard export and the rebalanced one, so the cost of the
  reset is known before going to the board.

The hardware path (:func:`run_on_loihi2`) needs Intel's lava-loihi extension (INRC);
:func:`loihi_extension_status` says what is missing, and everything else in this module
runs without it. Hardware-only code lives in :func:`_hardware_run` and is reached only
after that check.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from .errors import InputError, Snn2LoihiError
from .ir import SOFT_EXTENSIONS, SOFT_RESET_TYPE, Network, PoolLayer

#: Modules of Intel's Loihi extension that the hardware path imports.
LOIHI_MODULES = ("lava.magma.compiler.subcompilers.nc", "lava.utils.loihi2_profiler")
#: Samples :func:`compare_resets` rebalances on by default (each factor is one emulator run).
CALIBRATION_SAMPLES = 128
#: Threshold factors tried by :func:`rebalance_thresholds`.
DEFAULT_FACTORS = tuple(np.round(np.linspace(0.5, 1.0, 11), 3))


class HardwareUnavailable(Snn2LoihiError):
    """The Loihi 2 hardware path cannot run here (missing lava-loihi, or no board)."""


def loihi_extension_status() -> Optional[str]:
    """None when Lava's Loihi extension is importable, else which module is missing."""
    for name in LOIHI_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            return f"{name} is not importable"
    return None


def hardware_missing_message(missing: str) -> str:
    """What a user without lava-loihi is told (one clause)."""
    return f"Loihi 2 deployment needs Intel's lava-loihi extension (INRC members only): {missing}"


def soft_layers(net: Network) -> list:
    """Indices of the layers whose neuron resets softly (``CUBA_SOFT``)."""
    return [i for i, layer in enumerate(net.layers)
            if getattr(layer, "neuron", None) is not None and layer.neuron.kind == SOFT_RESET_TYPE]


def soft_only_layers(net: Network) -> list:
    """Indices of layers with a residual ``skip``, a ``v_init`` or a ``fire_window``:
    extensions of the soft neuron that stock netx cannot express (no hard-reset export
    exists for them)."""
    return [i for i, layer in enumerate(net.layers)
            if any(getattr(layer, name, None) is not None for name in SOFT_EXTENSIONS)]


def stock_netx_problems(net: Network) -> list:
    """Why lava-dl's stock netx (the hardware loader) cannot load ``net``, one string per
    problem with the fix; empty when it can."""
    problems = []
    soft, extended = soft_layers(net), soft_only_layers(net)
    if extended:
        problems.append(f"layers {extended} use residual skips, v_init or firing windows, which stock netx cannot "
                        f"load and which have no hard-reset export")
    elif soft:
        problems.append(f"layers {soft} reset softly (CUBA_SOFT), which needs a microcoded neuron this toolkit does "
                        f"not ship; deploy the hard-reset export (snn2loihi deploy --reset hard --hard-out FILE)")
    pools = [i for i, layer in enumerate(net.layers) if isinstance(layer, PoolLayer)]
    if pools:
        problems.append(f"layers {pools} are pool layers, which stock netx cannot load; replace pooling by a "
                        f"strided conv before export")
    return problems


def to_hard_reset(net: Network, thresholds: Optional[dict] = None) -> Network:
    """Copy of ``net`` with every ``CUBA_SOFT`` neuron turned into stock ``CUBA``.

    Args:
        net: the network.
        thresholds: optional {layer index: new vThMant} for the converted layers.

    Returns:
        a new :class:`Network` (weights shared, neurons replaced) that stock netx reads.
    """
    thresholds = thresholds or {}
    extended = soft_only_layers(net)
    if extended:
        raise InputError(f"layers {extended} use a residual skip, v_init or a firing window, which exist only for "
                         f"soft-reset neurons "
                         f"(stock netx drops them): there is no hard-reset export; run this network on Lava CPU "
                         f"(snn2loihi simulate --backend lava)")
    unknown = sorted(set(thresholds) - set(soft_layers(net)))
    if unknown:
        raise InputError(f"thresholds given for layers {unknown}, which have no soft-reset neuron")
    layers = []
    for i, layer in enumerate(net.layers):
        if i in soft_layers(net):
            neuron = replace(layer.neuron, kind="CUBA", vth_mant=int(thresholds.get(i, layer.neuron.vth_mant)))
            layer = replace(layer, neuron=neuron)
        layers.append(layer)
    return Network(layers, source=f"{net.source} (hard reset)" if net.source else "hard reset", notes=dict(net.notes))


@dataclass
class Rebalance:
    """Result of :func:`rebalance_thresholds`.

    Attributes:
        net: the hard-reset network with the chosen thresholds.
        factors: {layer index: chosen f}, vThMant' = round(f · vThMant).
        spike_error_plain: {layer index: Σ |spikes_hard - spikes_soft| per neuron and
            sample, divided by the soft spike total} of the plain hard export.
        spike_error: the same after rebalancing.
    """

    net: Network
    factors: dict
    spike_error_plain: dict
    spike_error: dict


def _counts(result, index: int) -> np.ndarray:
    """Spike counts per sample and neuron of one layer, (N, neurons)."""
    s = result.spikes[index]
    return s.reshape(s.shape[0], -1, s.shape[-1]).sum(axis=-1, dtype=np.int64)


def _relative_error(counts: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(counts - reference).sum() / max(int(reference.sum()), 1))


def rebalance_thresholds(net: Network, x: np.ndarray, factors: Sequence[float] = DEFAULT_FACTORS) -> Rebalance:
    """Hard-reset thresholds that match the soft-reset network's spike counts.

    Layer by layer in network order (earlier layers already rebalanced), every factor f
    of ``factors`` (and 1) is tried as ``vth' = max(1, round(f · vth))`` and the one with
    the smallest mismatch of this layer *and every later layer* is kept::

        E(f) = Σ_{l ≥ i} Σ_{n,k} |c_hard,l[n, k] - c_soft,l[n, k]| / Σ_{n,k} c_soft,l[n, k]

    with ``c[n, k]`` the spike count of neuron k in sample n (emulator). Counting the
    later layers keeps a threshold that matches its own layer but hurts the output from
    being chosen; ties keep the larger threshold. If the result matches the soft
    network's output layer worse than the plain export does, the plain thresholds are kept
    (all factors 1).

    Args:
        net: a network with soft-reset layers.
        x: calibration input (N, *input_shape, T), padded by the latency.
        factors: threshold factors to try (1 is always tried).
    """
    from .sim.emulator import Emulator

    soft = Emulator(net).run(x, record_all=True)
    targets = soft_layers(net)
    neuron_layers = [i for i, _ in net.neuron_layers]

    def errors(result) -> dict:
        return {i: _relative_error(_counts(result, i), _counts(soft, i)) for i in neuron_layers}

    plain = errors(Emulator(to_hard_reset(net)).run(x, record_all=True))
    chosen, thresholds, best_errors = {}, {}, plain
    for i in targets:
        vth = net.layers[i].neuron.vth_mant
        best = None
        for f in sorted(set(float(f) for f in factors) | {1.0}, reverse=True):
            trial = {**thresholds, i: max(1, int(round(f * vth)))}
            err = errors(Emulator(to_hard_reset(net, trial)).run(x, record_all=True))
            score = sum(e for j, e in err.items() if j >= i)
            if best is None or score < best[0]:
                best = (score, f, trial[i], err)
        _, chosen[i], thresholds[i], best_errors = best
    last = neuron_layers[-1]
    if best_errors[last] > plain[last]:  # never worse at the output than the plain export
        chosen, thresholds, best_errors = {i: 1.0 for i in targets}, {}, plain
    return Rebalance(to_hard_reset(net, thresholds), chosen, {i: plain[i] for i in targets},
                     {i: best_errors[i] for i in targets})


def _predictions(result) -> np.ndarray:
    """Class per sample: argmax of the last layer's spike counts (first index on ties)."""
    out = result.output
    return out.reshape(out.shape[0], -1, out.shape[-1]).sum(axis=-1).argmax(axis=-1)


@dataclass
class ResetComparison:
    """Emulator results of the soft network and its hard-reset exports.

    Attributes:
        rows: one dict per variant: ``variant``, ``accuracy`` (None without labels),
            ``agreement`` (fraction of samples classified as the soft network does),
            ``output_spike_error`` (Σ |Δ output spike counts| / soft output spikes).
        rebalance: the :class:`Rebalance` used (None when not requested).
        n_samples: samples evaluated.
    """

    rows: list
    n_samples: int
    rebalance: Optional[Rebalance] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {"n_samples": self.n_samples, "variants": self.rows}
        if self.rebalance is not None:
            d["rebalance"] = {"factors": {str(k): v for k, v in self.rebalance.factors.items()},
                              "spike_error_plain": {str(k): v for k, v in self.rebalance.spike_error_plain.items()},
                              "spike_error": {str(k): v for k, v in self.rebalance.spike_error.items()}}
        return d

    def format_table(self) -> str:
        lines = [f"Reset comparison on the emulator ({self.n_samples} samples):",
                 f"  {'variant':<40} {'accuracy':>9} {'agreement':>10} {'output spike error':>19}"]
        for r in self.rows:
            acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            lines.append(f"  {r['variant']:<40} {acc:>9} {r['agreement']:>10.4f} {r['output_spike_error']:>19.4f}")
        if self.rebalance is not None:
            lines.append("  rebalanced thresholds (f x vThMant): "
                         + ", ".join(f"layer {k}: {v:g}" for k, v in self.rebalance.factors.items()))
        return "\n".join(lines)


def compare_resets(net: Network, x: np.ndarray, labels: Optional[np.ndarray] = None,
                   rebalance: bool = True, calibration: Optional[np.ndarray] = None) -> ResetComparison:
    """Accuracy of the soft network, its plain hard export and (optionally) the rebalanced one.

    Args:
        net: a network with soft-reset layers.
        x: evaluation input (N, *input_shape, T), padded by the latency.
        labels: (N,) integer classes; accuracy is then reported.
        rebalance: also evaluate :func:`rebalance_thresholds`.
        calibration: input for rebalancing (default: the first
            :data:`CALIBRATION_SAMPLES` samples of ``x``).
    """
    from .sim.emulator import Emulator

    if not soft_layers(net):
        raise InputError("the network has no soft-reset (CUBA_SOFT) layer: nothing to compare")
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if labels.shape[0] != x.shape[0]:
            raise InputError(f"{labels.shape[0]} labels for {x.shape[0]} samples")
    soft = Emulator(net).run(x)
    variants = [("soft reset (CUBA_SOFT, needs microcode)", soft),
                ("hard reset (stock CUBA)", Emulator(to_hard_reset(net)).run(x))]
    rb = None
    if rebalance:
        rb = rebalance_thresholds(net, x[:CALIBRATION_SAMPLES] if calibration is None else calibration)
        variants.append(("hard reset, rebalanced thresholds", Emulator(rb.net).run(x)))
    reference, soft_counts = _predictions(soft), _counts(soft, max(soft.spikes))
    rows = []
    for name, result in variants:
        pred = _predictions(result)
        rows.append({"variant": name,
                     "accuracy": None if labels is None else float((pred == labels).mean()),
                     "agreement": float((pred == reference).mean()),
                     "output_spike_error": _relative_error(_counts(result, max(result.spikes)), soft_counts)})
    return ResetComparison(rows, int(x.shape[0]), rb)


@dataclass
class HardwareRun:
    """Output of a Loihi 2 run: last-layer spikes (N, *shape, T) and, when profiled, the
    measured energy per inference (:func:`snn2loihi.accounting.measured_energy`)."""

    spikes: np.ndarray
    measured: Optional[dict] = None


def run_on_loihi2(net_path: str, x: np.ndarray, partition: Optional[str] = None, board: Optional[str] = None,
                  profile: bool = False) -> HardwareRun:
    """Run a stock (hard-reset) netx file on Loihi 2 through Lava's hardware path.

    The file is loaded by lava-dl's ``netx.hdf5.Network`` (state reset every T steps,
    staggered by layer depth: ``reset_interval=T``), fed through ``PyToNxAdapter`` /
    ``NxToPyAdapter`` and run with ``Loihi2HwCfg`` on a board chosen by SLURM
    (``lava.utils.loihi.use_slurm_host``). With ``profile`` the Loihi2Power and
    Loihi2ExecutionTime probes give the energy per inference.

    Raises:
        HardwareUnavailable: lava-loihi is not installed (says what is missing).
        InputError: stock netx cannot load the file (soft-reset or pool layers).
    """
    missing = loihi_extension_status()
    if missing:
        raise HardwareUnavailable(f"{net_path}: {hardware_missing_message(missing)}; CPU simulation is available: "
                                  f"snn2loihi simulate {net_path} --backend lava")
    from .netx import read_network

    problems = stock_netx_problems(read_network(net_path))
    if problems:
        raise InputError(f"{net_path}: {'; '.join(problems)}")
    return _hardware_run(net_path, np.asarray(x), partition, board, profile)


def _hardware_run(net_path: str, x: np.ndarray, partition: Optional[str], board: Optional[str],
                  profile: bool) -> HardwareRun:  # pragma: no cover - needs lava-loihi and a Loihi 2 board
    from lava.magma.core.callback_fx import IterableCallBack
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg
    from lava.proc import embedded_io as eio
    from lava.proc import io
    from lava.utils import loihi

    from .accounting import measured_energy
    from .lava_imports import netx

    loihi.use_slurm_host(partition=partition, board=board)
    n, steps = x.shape[0], x.shape[-1]
    net = netx().hdf5.Network(net_config=net_path, reset_interval=steps)
    stream = np.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (n * steps,))
    stream = stream.transpose(tuple(range(stream.ndim - 1))[::-1] + (stream.ndim - 1,))  # CHW → WHC
    source = io.source.RingBuffer(data=stream.astype(np.int32))
    to_chip = eio.spike.PyToNxAdapter(shape=net.inp.shape)
    from_chip = eio.spike.NxToPyAdapter(shape=net.out.shape)
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=n * steps)
    source.s_out.connect(to_chip.inp)
    to_chip.out.connect(net.inp)
    net.out.connect(from_chip.inp)
    from_chip.out.connect(sink.a_in)
    callbacks, probes = [], None
    if profile:
        from lava.utils import loihi2_profiler

        probes = (loihi2_profiler.Loihi2Power(num_steps=n * steps),
                  loihi2_profiler.Loihi2ExecutionTime(buffer_size=n * steps))
        callbacks.append(IterableCallBack(pre_run_fxs=[p.attach for p in probes],
                                          post_run_fxs=[lambda board, p=p: p.get_results() for p in probes]))
    try:
        source.run(condition=RunSteps(num_steps=n * steps), run_cfg=Loihi2HwCfg(callback_fxs=callbacks))
        data = np.asarray(sink.data.get())
    finally:
        source.stop()
    shape = tuple(net.out.shape)[::-1]
    data = data.transpose(tuple(range(len(shape)))[::-1] + (len(shape),)).reshape(shape + (n, steps))
    measured = None
    if probes is not None:
        power, timer = probes
        measured = measured_energy(float(np.mean(power.total_power)), float(np.mean(power.static_total_power)),
                                   float(np.mean(timer.time_per_step)), steps)
    return HardwareRun(np.moveaxis(data, -2, 0).astype(np.uint8), measured)

