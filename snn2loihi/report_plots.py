"""One-page PNG report of an :class:`~snn2loihi.accounting.Accounting`.

Panels: (a) firing rate per layer (spikes per neuron per step), (b) energy per layer in
nJ per inference, SNN event model against the ANN baseline, (c) a spike raster of one
sample across layers: each layer gets a band of equal height (stacked bottom to top in
network order, labelled with name, neuron count and spike count) and its neurons,
flattened in C order, are spread evenly inside the band.

Matplotlib is used through its Agg canvas directly (no pyplot, so the global backend
and any open figures are untouched). The file is written atomically: a temporary file
in the same directory, then ``os.replace``.
"""
from __future__ import annotations

import os
import tempfile
from typing import Mapping, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .accounting import Accounting, layer_type
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


def plot_report(acc: Accounting, sample_spikes: Mapping[str, np.ndarray], path: str,
                title: Optional[str] = None) -> str:
    """Write the report PNG to ``path`` (atomically) and return the path.

    Args:
        acc: the accounting of the run.
        sample_spikes: {layer name: uint8 spikes (*shape, T)} of one sample, e.g. from
            :func:`sample_spikes`; every array is flattened to (neurons, T).
        path: output file (PNG).
        title: optional figure title; a default names N, T and the energy ratio.
    """
    names = [la.name for la in acc.layers]
    idx = np.arange(len(names))
    fig = Figure(figsize=(12, 9), dpi=110, constrained_layout=True)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.3))

    ax = fig.add_subplot(grid[0, 0])
    rates = np.array([la.firing_rate for la in acc.layers])
    ax.bar(idx, rates, color="tab:blue")
    ax.set_xticks(idx, names, rotation=45, ha="right")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_title(f"(a) firing rate per layer (T = {acc.timesteps})")
    for i, r in enumerate(rates):
        ax.annotate(f"{r:.3f}", (i, r), ha="center", va="bottom", fontsize=8)

    ax = fig.add_subplot(grid[0, 1])
    snn = np.array([la.energy_nj for la in acc.layers])
    ann = np.array([la.ann_energy_nj for la in acc.layers])
    width = 0.4
    ax.bar(idx - width / 2, snn, width, label=f"SNN ({acc.snn_model.name})", color="tab:green")
    ax.bar(idx + width / 2, np.where(ann > 0, ann, np.nan), width, label=f"ANN ({acc.ann_model.name})",
           color="tab:gray")
    _bar_scale(ax, np.concatenate([snn, ann]))
    ax.set_xticks(idx, names, rotation=45, ha="right")
    ax.set_ylabel("energy (nJ per inference)")
    ratio = acc.ratio
    ratio_txt = f"ANN/SNN = {ratio:.3g}" if ratio is not None else "ANN/SNN undefined"
    ax.set_title(f"(b) energy per layer: SNN {acc.energy_nj:.4g} nJ, ANN {acc.ann_energy_nj:.4g} nJ, {ratio_txt}",
                 fontsize=9)
    ax.legend(fontsize=8)

    ax = fig.add_subplot(grid[1, :])
    # one band of height 1 per layer (layer k at offset k), neurons spread evenly inside it, so a
    # 10-neuron readout stays visible next to a 10^4-neuron conv layer
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
    ax.set_title("(c) spike raster of one sample (one band per layer, neurons flattened in C order, "
                 "index increasing upward)")

    fig.suptitle(title or f"snn2loihi accounting: N = {acc.n_samples} samples, T = {acc.timesteps} steps; "
                          f"energy model {acc.snn_model.name} (pre-silicon) vs {acc.ann_model.name}",
                 fontsize=10)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
