"""PNG plots of an :class:`~snn2loihi.accounting.Accounting`.

Panels: (a) firing rate per layer (spikes per neuron per step), (b) synaptic ops per
inference per layer, dense and effective (and spike messages when a core mapping was
given), (c) energy per layer in nJ per inference: the Loihi event model (when priced),
the compute-only formula and the ANN baseline side by side, (d) a spike raster of one
sample across layers: each layer gets a band of equal height (stacked bottom to top in
network order, labelled with name, neuron count and spike count) and its neurons,
flattened in C order, are spread evenly inside the band.

:func:`plot_report` puts all four on one page; :func:`write_plots` writes each to its own
file (``firing_rate.png``, ``synops.png``, ``energy.png``, ``raster.png``).

Matplotlib is used through its Agg canvas directly (no pyplot, so the global backend
and any open figures are untouched). The file is written atomically: a temporary file
in the same directory, then ``os.replace``.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .accounting import Accounting, layer_type
from .atomic import atomic_path
from .ir import FlattenLayer, InputLayer, Network
from .sim.emulator import SimResult


def sample_spikes(net: Network, result: SimResult, sample: int = 0,
                  x: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """Spikes of one sample per layer, named as in the accounting, for :func:`plot_report`.

    Args:
        net: the simulated network.
        result: a run with the layers to show recorded, each (N, *shape, T).
        sample: which sample n to take.
        x: the run's input (N, *input_shape, T); when given and the input layer has no
            neuron, its binary spikes are included first as ``"0:input"``.

    Returns:
        {layer name: uint8 array (*shape, T)}, in network order.
    """
    out: dict[str, np.ndarray] = {}
    if x is not None and net.input.neuron is None:
        out["0:input"] = (np.asarray(x)[sample] != 0).astype(np.uint8)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, FlattenLayer) or (isinstance(layer, InputLayer) and layer.neuron is None):
            continue
        if i in result.spikes:
            out[f"{i}:{layer_type(layer)}"] = np.asarray(result.spikes[i][sample], dtype=np.uint8)
    return out


def _bar_scale(ax, values: np.ndarray) -> None:
    """Log scale when the positive values span more than two decades."""
    pos = values[values > 0]
    if pos.size and pos.max() / pos.min() > 100:
        ax.set_yscale("log")


def _layer_axis(ax, acc: Accounting) -> np.ndarray:
    idx = np.arange(len(acc.layers))
    ax.set_xticks(idx, [la.name for la in acc.layers], rotation=45, ha="right")
    return idx


def panel_rates(ax, acc: Accounting) -> None:
    """(a) Firing rate per layer, annotated."""
    idx = _layer_axis(ax, acc)
    rates = np.array([la.firing_rate for la in acc.layers])
    ax.bar(idx, rates, color="tab:blue")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_title(f"(a) firing rate per layer (T = {acc.timesteps})")
    for i, r in enumerate(rates):
        ax.annotate(f"{r:.3f}", (i, r), ha="center", va="bottom", fontsize=8)


def panel_synops(ax, acc: Accounting) -> None:
    """(b) Dense and effective synaptic ops (and spike messages) per inference."""
    idx = _layer_axis(ax, acc)
    series = [("synops (dense)", [la.synops_per_sample for la in acc.layers], "tab:purple"),
              ("synops (effective)", [la.effective_synops_per_sample for la in acc.layers], "tab:pink")]
    if acc.chip is not None:
        series.append((f"spike messages ({acc.chip} mapping)", [la.spike_messages_per_sample for la in acc.layers],
                       "tab:olive"))
    width = 0.8 / len(series)
    for k, (label, values, color) in enumerate(series):
        ax.bar(idx + (k - (len(series) - 1) / 2) * width, np.asarray(values, float), width, label=label, color=color)
    _bar_scale(ax, np.concatenate([np.asarray(v, float) for _, v, _ in series]))
    ax.set_ylabel("operations per inference")
    ax.set_title("(b) synaptic operations per layer (exact fan-out)")
    ax.legend(fontsize=8)


def panel_energy(ax, acc: Accounting) -> None:
    """(c) Energy per layer: event model (if priced), compute-only, ANN baseline."""
    idx = _layer_axis(ax, acc)
    series = []
    if not acc.snn_model.measured_only:
        series.append((f"SNN event model ({acc.snn_model.name})", [la.energy_nj for la in acc.layers], "tab:green"))
    series += [(f"SNN compute-only ({acc.ann_model.name}, layer 1 MACs)",
                [la.compute_energy_nj for la in acc.layers], "tab:cyan"),
               (f"ANN ({acc.ann_model.name})", [la.ann_energy_nj for la in acc.layers], "tab:gray")]
    width = 0.8 / len(series)
    for k, (label, values, color) in enumerate(series):
        v = np.asarray(values, float)
        ax.bar(idx + (k - (len(series) - 1) / 2) * width, np.where(v > 0, v, np.nan), width, label=label,
               color=color)
    _bar_scale(ax, np.concatenate([np.asarray(v, float) for _, v, _ in series]))
    ax.set_ylabel("energy (nJ per inference)")
    snn = "n/a (measured only)" if acc.energy_nj is None else f"{acc.energy_nj:.4g}"
    ax.set_title(f"(c) energy, nJ: SNN event {snn}, compute-only {acc.compute_energy_nj:.4g}, "
                 f"ANN {acc.ann_energy_nj:.4g}", fontsize=8)
    ax.legend(fontsize=7)


def panel_raster(ax, sample_spikes: Mapping[str, np.ndarray]) -> None:
    """(d) One band of height 1 per layer (layer k at offset k), neurons spread evenly
    inside it, so a 10-neuron readout stays visible next to a 10^4-neuron conv layer."""
    ticks, labels = [], []
    t_max = 1
    for k, (name, spikes) in enumerate(sample_spikes.items()):
        s = np.asarray(spikes)
        s = s.reshape(-1, s.shape[-1]) if s.ndim > 1 else s.reshape(1, -1)
        t_max = max(t_max, s.shape[1])
        neuron, step = np.nonzero(s)
        y = k + 0.05 + 0.9 * (neuron + 0.5) / s.shape[0]
        ax.scatter(step, y, s=4, marker="|", color=f"C{k % 10}", linewidths=0.6)
        ticks.append(k + 0.5)
        labels.append(f"{name}\n{s.shape[0]} neurons\n{int(s.sum())} spikes")
        ax.axhline(k + 1, color="0.8", lw=0.5)
    ax.set_xlim(-0.5, t_max - 0.5)
    ax.set_ylim(0, max(len(sample_spikes), 1))
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("time step")
    ax.set_title("(d) spike raster of one sample (one band per layer, neurons flattened in C order, "
                 "index increasing upward)")


def _default_title(acc: Accounting) -> str:
    kind = " (pre-silicon)" if acc.snn_model.name.startswith("LOIHI1") else ""
    return (f"snn2loihi accounting: N = {acc.n_samples} samples, T = {acc.timesteps} steps; "
            f"energy model {acc.snn_model.name}{kind} vs {acc.ann_model.name}")


def save_figure(fig: Figure, path: str) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (temporary file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _figure(size: tuple) -> Figure:
    fig = Figure(figsize=size, dpi=110, constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def plot_report(acc: Accounting, sample_spikes: Mapping[str, np.ndarray], path: str,
                title: Optional[str] = None) -> str:
    """Write the one-page report PNG (all four panels) to ``path`` and return the path.

    Args:
        acc: the accounting of the run.
        sample_spikes: {layer name: uint8 spikes (*shape, T)} of one sample, e.g. from
            :func:`sample_spikes`; every array is flattened to (neurons, T).
        path: output file (PNG).
        title: optional figure title; a default names N, T and the energy models.
    """
    fig = _figure((15, 9))
    grid = fig.add_gridspec(2, 3, height_ratios=(1, 1.3))
    panel_rates(fig.add_subplot(grid[0, 0]), acc)
    panel_synops(fig.add_subplot(grid[0, 1]), acc)
    panel_energy(fig.add_subplot(grid[0, 2]), acc)
    panel_raster(fig.add_subplot(grid[1, :]), sample_spikes)
    fig.suptitle(title or _default_title(acc), fontsize=10)
    return save_figure(fig, path)


#: File names :func:`write_plots` writes, one panel each.
PLOT_FILES = {"firing_rate": "firing_rate.png", "synops": "synops.png", "energy": "energy.png",
              "raster": "raster.png"}


def write_plots(acc: Accounting, sample_spikes: Mapping[str, np.ndarray], folder: str) -> dict:
    """Write each panel to its own PNG in ``folder``; returns {panel: path}."""
    panels = {"firing_rate": (panel_rates, acc, (7, 4.5)), "synops": (panel_synops, acc, (7, 4.5)),
              "energy": (panel_energy, acc, (8, 5)), "raster": (panel_raster, sample_spikes, (12, 6))}
    out = {}
    for name, (panel, data, size) in panels.items():
        fig = _figure(size)
        panel(fig.add_subplot(), data)
        fig.suptitle(_default_title(acc), fontsize=8)
        out[name] = save_figure(fig, os.path.join(folder, PLOT_FILES[name]))
    return out
