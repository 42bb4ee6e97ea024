"""The end-to-end demo: train → quantize → netx file → emulator and Lava CPU → report.

Trains a small convolutional soft-reset LIF network on scikit-learn's real handwritten
digits (8×8, rate-coded over T steps), quantizes it to Loihi fixed point, writes
``model.net``, reads that file back, evaluates the whole test split with the emulator
and a subset on Lava's CPU backend (checking every layer's spikes against the emulator),
accounts spikes, synaptic operations and energy, and writes ``report.json`` and
``report.png``.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .accounting import account
from .atomic import write_json
from .blocks.network import SpikingNetwork
from .blocks.soft_lif import Conv, Dense, Flatten, Pool
from .data.digits import load_digits_split
from .data.encoding import pad_time, rate_encode
from .netx import read_network, write_network
from .quantize import quantize_network
from .report_plots import plot_report, sample_spikes
from .sim.emulator import Emulator
from .sim.lava_runner import run_lava
from .training.loop import evaluate, fit
from .training.losses import spike_count_cross_entropy


@dataclass
class DemoConfig:
    """Settings of the demo run (defaults: ~2 minutes on 2 cores)."""

    timesteps: int = 16
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    lava_samples: int = 100
    lava_chunk: int = 50


def demo_network(timesteps: int) -> SpikingNetwork:
    """conv(1→16, 3×3) → avg-pool 2 → conv(16→32, 3×3) → avg-pool 2 → dense(128→10),
    integrate-and-fire neurons (current_decay 1, voltage_decay 0), soft reset, θ = 1."""
    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0, "reset": "soft"}
    return SpikingNetwork((1, 8, 8), [
        Conv(p, 1, 16, 3, padding=1, weight_scale=2), Pool(p, 2),
        Conv(p, 16, 32, 3, padding=1, weight_scale=2), Pool(p, 2),
        Flatten(), Dense(p, 32 * 2 * 2, 10, weight_scale=2),
    ])


def _accuracy(output: np.ndarray, labels: np.ndarray) -> float:
    return float((output.reshape(len(labels), -1, output.shape[-1]).sum(-1).argmax(-1) == labels).mean())


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def run_demo(out_dir: str, config: DemoConfig | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Run the whole pipeline and write ``model.net``, ``report.json``, ``report.png``.

    Returns:
        the report written to ``report.json``.
    """
    config = config or DemoConfig()
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(config.seed)
    timings: dict = {}
    start = time.perf_counter()

    data = load_digits_split(seed=config.seed)
    x_train, x_test = rate_encode(data.x_train, config.timesteps), rate_encode(data.x_test, config.timesteps)
    log(f"data: {data.name}, {len(x_train)} train / {len(x_test)} test, rate-coded over T={config.timesteps}")

    model = demo_network(config.timesteps)
    history = fit(model, x_train, data.y_train, spike_count_cross_entropy, epochs=config.epochs,
                  batch_size=config.batch_size, lr=config.lr, seed=config.seed, progress=progress)
    timings["train_s"] = time.perf_counter() - start

    model.set_fixed_point(False)
    acc_float = evaluate(model, x_test, data.y_test)
    model.set_fixed_point(True)
    acc_training = evaluate(model, x_test, data.y_test)
    log(f"trained {config.epochs} epochs: float accuracy {acc_float:.4f}, fixed-point-aware {acc_training:.4f}")

    net, quant = quantize_network(model)
    net_path = os.path.join(out_dir, "model.net")
    write_network(net, net_path)
    net = read_network(net_path)  # everything below runs from the file
    log(f"wrote {net_path}\n{quant.summary()}")

    window = config.timesteps + net.latency
    x_window = pad_time(x_test, net.latency)
    t0 = time.perf_counter()
    emulated = Emulator(net).run(x_window, record_all=True, batch_size=128,
                                 progress=lambda it: tqdm(it, desc="emulator", disable=not progress, leave=False))
    timings["emulator_s"] = time.perf_counter() - t0
    acc_fixed = _accuracy(emulated.output, data.y_test)
    log(f"emulator: fixed-point accuracy {acc_fixed:.4f} on all {len(x_test)} test samples")

    n_lava = min(config.lava_samples, len(x_test))
    t0 = time.perf_counter()
    lava_spikes: dict = {}
    for begin in tqdm(range(0, n_lava, config.lava_chunk), desc="Lava CPU", disable=not progress, leave=False):
        chunk = run_lava(net, x_window[begin:min(n_lava, begin + config.lava_chunk)], record_all=True)
        for index, spikes in chunk.spikes.items():
            lava_spikes.setdefault(index, []).append(spikes)
    lava_spikes = {i: np.concatenate(s) for i, s in lava_spikes.items()}
    timings["lava_s"] = time.perf_counter() - t0
    mismatched = int(sum((lava_spikes[i] != emulated.spikes[i][:n_lava]).sum() for i in lava_spikes))
    compared = int(sum(s.size for s in lava_spikes.values()))
    acc_lava = _accuracy(lava_spikes[max(lava_spikes)], data.y_test[:n_lava])
    log(f"Lava CPU: accuracy {acc_lava:.4f} on {n_lava} samples; {mismatched} of {compared} "
        f"layer-by-layer spike values differ from the emulator")

    accounting = account(net, x_window, emulated)
    plot_report(accounting, sample_spikes(net, emulated, sample=0, x=x_window),
                os.path.join(out_dir, "report.png"), title=f"snn2loihi demo ({data.name}, T={config.timesteps})")
    timings["total_s"] = time.perf_counter() - start

    report = {
        "dataset": {"name": data.name, "train": int(len(x_train)), "test": int(len(x_test)),
                    "encoding": "uniform rate code"},
        "config": asdict(config),
        "model": {"path": net_path, "sha256": _sha256(net_path), "latency": net.latency,
                  "layers": [type(layer).__name__ for layer in net.layers]},
        "timesteps": config.timesteps,
        "window": window,
        "accuracy": {"float": acc_float, "fixed_point_training": acc_training, "fixed_point": acc_fixed,
                     "lava": acc_lava, "lava_samples": n_lava, "test_samples": int(len(x_test))},
        "lava_vs_emulator": {"samples": n_lava, "layers": sorted(int(i) for i in lava_spikes),
                             "spike_values_compared": compared, "mismatched_spikes": mismatched},
        "training": {"loss": history.loss, "accuracy": history.accuracy, "spike_rate": history.spike_rate},
        "quantization": quant.to_dict(),
        "overflow": asdict(emulated.overflow) | {"conv_wraps": emulated.conv_wraps},
        "energy": accounting.to_dict(),
        "timings": timings,
    }
    write_json(os.path.join(out_dir, "report.json"), report)
    log(accounting.format_table())
    return report
