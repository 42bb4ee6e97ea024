#!/usr/bin/env python
"""Benchmark: batched fixed-point emulator vs Lava's CPU backend on the same network.

Builds a small conv network like the demo's (or reads one with ``--net``), generates
random input samples, and in one invocation measures:

- emulator throughput (samples/s) on ``--samples-emulator`` samples;
- Lava CPU throughput (samples/s, one ``run_lava`` call streaming ``--samples-lava``
  samples, output layer recorded, runtime start-up included);
- the speed ratio;
- spike mismatches between the two on the common samples: the output layer on all Lava
  samples, and every layer on the first ``--samples-all-layers`` of them (a second,
  untimed Lava run that records every layer). Both must be 0; the exit status is 1
  otherwise.

Writes ``bench/results/emulator_vs_lava.json`` and ``.md`` (``--out-dir``).

Network (default): input (1, 8, 8) binary spikes → conv 1→16 3×3 pad 1 → sum-pool 2×2
→ conv 16→32 3×3 pad 1 → sum-pool 2×2 → flatten → dense 128→10, soft-reset
integrate-and-fire neurons (iDecay 4096, vDecay 0) as in the demo, random weights on
slayer's even 8-bit grid. Input: Bernoulli spikes for T steps plus ``net.latency``
silent steps, so the last layer's response to the last input step is in the window.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata

import numpy as np
import torch

import snn2loihi
from snn2loihi import allocator
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.netx.reader import read_network
from snn2loihi.sim.emulator import Emulator
from snn2loihi.sim.lava_runner import run_lava

HERE = os.path.dirname(os.path.abspath(__file__))


def demo_like_network(seed: int = 0) -> Network:
    """The demo's topology with random integer weights that keep every layer spiking."""
    rng = np.random.default_rng(seed)

    def weight(shape, mean, std):
        return np.clip(np.round(rng.normal(mean, std, size=shape) / 2) * 2, -256, 254).astype(np.int64)

    def soft(vth):
        return NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=vth)

    conv1 = ConvLayer((1, 8, 8), weight((16, 1, 3, 3), 0, 80), soft(200), padding=1)
    pool1 = PoolLayer(conv1.out_shape, np.full((2, 2), 64), soft(160))
    conv2 = ConvLayer(pool1.out_shape, weight((32, 16, 3, 3), -4, 60), soft(400), padding=1)
    pool2 = PoolLayer(conv2.out_shape, np.full((2, 2), 64), soft(160))
    flat = FlattenLayer(pool2.out_shape)
    dense = DenseLayer(weight((10, 128), 0, 80), soft(400))
    return Network([InputLayer((1, 8, 8)), conv1, pool1, conv2, pool2, flat, dense],
                   source="bench: demo-like random network")


def vgg_like_network(seed: int = 0) -> Network:
    """A VGG-style stack on (1, 16, 16): two 3×3 convs per stage, pooling between stages."""
    rng = np.random.default_rng(seed)

    def weight(shape, std):
        return np.clip(np.round(rng.normal(0, std, size=shape) / 2) * 2, -256, 254).astype(np.int64)

    def soft(vth):
        return NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=vth)

    layers = [InputLayer((1, 16, 16))]
    shape, channels = (1, 16, 16), 1
    for width, vth in ((16, 150), (32, 300)):
        for _ in range(2):
            conv = ConvLayer(shape, weight((width, channels, 3, 3), 90 / np.sqrt(channels)), soft(vth), padding=1)
            layers.append(conv)
            shape, channels = conv.out_shape, width
        pool = PoolLayer(shape, np.full((2, 2), 64), soft(160))
        layers.append(pool)
        shape = pool.out_shape
    layers += [FlattenLayer(shape), DenseLayer(weight((10, int(np.prod(shape))), 40), soft(300))]
    return Network(layers, source="bench: VGG-style random network")


def make_input(net: Network, n: int, steps: int, seed: int) -> np.ndarray:
    """(N, *input_shape, steps + latency): Bernoulli spikes (rate 0.3 per step, scaled by a
    random per-pixel intensity), or integer currents when the input layer has a neuron."""
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(net.input.shape)
    if net.input.neuron is None:
        intensity = rng.random(shape)[..., None]
        x = (rng.random(shape + (steps,)) < 0.6 * intensity).astype(np.uint8)
    else:
        x = rng.integers(0, 64, size=shape + (steps,)).astype(np.int64)
    pad = np.zeros(shape + (net.latency,), dtype=x.dtype)
    return np.concatenate([x, pad], axis=-1)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def describe(net: Network) -> list:
    rows = []
    for i, layer in enumerate(net.layers):
        neuron = getattr(layer, "neuron", None)
        rows.append({"index": i, "type": type(layer).__name__, "out_shape": list(layer.out_shape),
                     "neuron": None if neuron is None else neuron.kind})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", help="netx file to benchmark (default: built-in demo-like network)")
    parser.add_argument("--samples-emulator", type=int, default=2000, help="samples timed in the emulator")
    parser.add_argument("--samples-lava", type=int, default=20, help="samples timed in one Lava run")
    parser.add_argument("--samples-all-layers", type=int, default=4,
                        help="samples compared at every layer (extra untimed Lava run; 0 to skip)")
    parser.add_argument("--timesteps", type=int, default=16, help="input steps per sample (latency padding is added)")
    parser.add_argument("--repeats", type=int, default=3, help="emulator timing repeats (the best is reported)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the emulator (default 1: with 2+ threads, OpenMP "
                             "spin-waits make timings erratic when other processes share the cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    allocator.keep_freed_memory()  # large tensors reuse freed pages (docs/performance.md)
    if args.samples_lava < 1 or args.samples_emulator < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--samples-lava, --samples-emulator, --repeats and --threads must be >= 1")

    torch.set_num_threads(args.threads)
    net = read_network(args.net) if args.net else demo_like_network(args.seed)
    n_emu = max(args.samples_emulator, args.samples_lava)
    x = make_input(net, n_emu, args.timesteps, args.seed + 1)
    steps = x.shape[-1]
    print(f"network: {net.source or args.net}; {len(net.layers)} layers, input {net.input.shape}, "
          f"output {net.output_shape}; {steps} steps per sample ({args.timesteps} + latency {net.latency})")

    emulator = Emulator(net)
    emulator.run(x[:8])  # warm-up (torch kernels, allocator)
    emu_times = []
    for _ in range(args.repeats):  # best of a few: the machine may be shared
        t0 = time.perf_counter()
        emu = emulator.run(x)
        emu_times.append(time.perf_counter() - t0)
    emu_s = min(emu_times)
    print(f"emulator: {n_emu} samples in {emu_s:.2f} s (best of {args.repeats}: "
          f"{', '.join(f'{t:.2f}' for t in emu_times)})")

    n_lava = args.samples_lava
    t0 = time.perf_counter()
    lava = run_lava(net, x[:n_lava], record_all=False)
    lava_s = time.perf_counter() - t0
    print(f"lava:     {n_lava} samples in {lava_s:.2f} s")

    last = len(net.layers) - 1
    out_mismatch = int((emu.output[:n_lava] != lava.spikes[last]).sum())
    layer_mismatch: dict = {}
    layer_spikes: dict = {}
    n_all = min(args.samples_all_layers, n_lava)
    if n_all:
        emu_all = emulator.run(x[:n_all], record_all=True)
        lava_all = run_lava(net, x[:n_all], record_all=True)
        for index in sorted(emu_all.spikes):
            layer_mismatch[str(index)] = int((emu_all.spikes[index] != lava_all.spikes[index]).sum())
            layer_spikes[str(index)] = int(emu_all.spikes[index].sum())

    emu_rate = n_emu / emu_s
    lava_rate = n_lava / lava_s
    result = {
        "network": {"source": net.source or args.net, "layers": describe(net),
                    "neurons": int(sum(np.prod(l.out_shape) for _, l in net.neuron_layers
                                       if not isinstance(l, InputLayer))),
                    "steps_per_sample": steps, "input_steps": args.timesteps, "latency": net.latency},
        "emulator": {"samples": n_emu, "seconds": round(emu_s, 4), "samples_per_s": round(emu_rate, 2),
                     "seconds_all_repeats": [round(t, 4) for t in emu_times],
                     "steps_per_s": round(emu_rate * steps, 1), "device": "cpu",
                     "torch_threads": torch.get_num_threads()},
        "lava": {"samples": n_lava, "seconds": round(lava_s, 4), "samples_per_s": round(lava_rate, 3),
                 "steps_per_s": round(lava_rate * steps, 1), "backend": "Loihi2SimCfg(select_tag='fixed_pt')",
                 "recorded": "output layer", "includes_startup": True},
        "speedup_emulator_over_lava": round(emu_rate / lava_rate, 1),
        "mismatches": {"output_common_samples": n_lava, "output": out_mismatch,
                       "all_layers_samples": n_all, "per_layer": layer_mismatch,
                       "total": out_mismatch + sum(layer_mismatch.values())},
        "emulator_spikes_per_layer_on_all_layer_samples": layer_spikes,
        "output_spikes_per_sample": round(float(emu.output.sum() / n_emu), 2),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "lava-nc": _version("lava-nc"), "lava-dl": _version("lava-dl"),
                    "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
                    "snn2loihi_path": os.path.dirname(os.path.abspath(snn2loihi.__file__))},
        "command": " ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
    }

    rows = [("", "samples", "seconds", "samples/s"),
            ("emulator", n_emu, f"{emu_s:.2f}", f"{emu_rate:.1f}"),
            ("Lava CPU", n_lava, f"{lava_s:.2f}", f"{lava_rate:.2f}")]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    table = "\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in rows)
    print()
    print(table)
    print(f"speed-up (emulator / Lava): {result['speedup_emulator_over_lava']}x")
    print(f"spike mismatches: output {out_mismatch} on {n_lava} samples; "
          f"every layer {sum(layer_mismatch.values())} on {n_all} samples {layer_mismatch}")

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "emulator_vs_lava.json"), "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    md = [
        "# Emulator vs Lava CPU",
        "",
        f"Network: {result['network']['source']} — input {tuple(net.input.shape)}, "
        f"{result['network']['neurons']} neurons, {steps} steps per sample "
        f"({args.timesteps} input + {net.latency} latency).",
        "",
        "| backend | samples | seconds | samples/s | steps/s |",
        "|---|---:|---:|---:|---:|",
        f"| emulator (torch, CPU, {torch.get_num_threads()} threads) | {n_emu} | {emu_s:.2f} | "
        f"{emu_rate:.1f} | {emu_rate * steps:.0f} |",
        f"| Lava CPU, fixed_pt (one run, start-up included) | {n_lava} | {lava_s:.2f} | "
        f"{lava_rate:.2f} | {lava_rate * steps:.0f} |",
        "",
        f"Speed-up of the emulator over Lava: **{result['speedup_emulator_over_lava']}×**.",
        "",
        f"Spike mismatches: **{out_mismatch}** at the output on the {n_lava} common samples; "
        f"**{sum(layer_mismatch.values())}** over every layer on {n_all} samples "
        f"(per layer: {layer_mismatch}).",
        "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, "
        f"torch {result['machine']['torch']}, lava-nc {result['machine']['lava-nc']}, "
        f"lava-dl {result['machine']['lava-dl']}; load average {result['machine']['load_average_1_5_15']} "
        f"(the emulator time is the best of {args.repeats} runs).",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    with open(os.path.join(args.out_dir, "emulator_vs_lava.md"), "w") as handle:
        handle.write("\n".join(md))
    print(f"wrote {os.path.join(args.out_dir, 'emulator_vs_lava.json')} and .md")
    return 0 if result["mismatches"]["total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
