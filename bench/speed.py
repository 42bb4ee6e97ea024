#!/usr/bin/env python
"""Performance, measured side by side in one run: training throughput against peers,
emulator against Lava CPU, memory and thread scaling. Writes bench/results/speed.{json,md}.

Training workload (the issue's): batch 64 of 28×28 binary spike inputs, T steps,
conv(1→32, 3×3)+LIF → avg-pool 2 → conv(32→64, 3×3)+LIF → avg-pool 2 → fc(3136→10)+LIF,
forward + backward + SGD step, loss = cross-entropy on output spike counts. Our network
is the deployable one, so its two pooling layers also carry LIF neurons (slayer's pool
block): strictly more work than the peers' plain average pooling.

Peers (snnTorch, SpikingJelly) are installed with ``pip --target bench/.peers --no-deps``
so that they run on this environment's torch without touching it; lava-dl slayer's CUBA
blocks come with lava-dl. A peer that cannot be installed or run is reported as such.

Ours runs slayer-compatible blocks whose synapses fold time into the batch (2-D
convolutions) and whose neurons run the compiled one-pass time loop
(``snn2loihi/neuron/lif_kernel.cpp``); the PyTorch-loop row is the same network where no
compiler is available. The emulator likewise runs its integer neurons in the compiled loop
(its ``lif_step`` PyTorch loop is reported beside it).

A neuron-free run of the same synapses (``synapses_only``) bounds what any implementation on
dense PyTorch convolutions can reach: ``ceiling_ratio_to_fastest_peer`` below 2 means the
issue's "2× the fastest peer" is out of reach on this machine without sparse synapses.

The process keeps freed memory (:func:`snn2loihi.allocator.keep_freed_memory`, as the
``snn2loihi`` command does) for every framework alike; the row "ours (C library's default
allocator)" is measured in a child process without it.

Usage: ``.venv/bin/python bench/speed.py [--steps 4] [--timesteps 4 8 16] [--device cuda]``
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from snn2loihi import allocator

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_DIR = os.path.join(HERE, ".peers")
PEERS = {"snntorch": "snntorch==1.0.0", "spikingjelly": "spikingjelly==0.0.0.0.14"}
BATCH = 64


# --- training workloads -------------------------------------------------------------------
def ours(timesteps: int, fused: bool = True):
    from snn2loihi.blocks.network import SpikingNetwork
    from snn2loihi.blocks.soft_lif import Conv, Dense, Flatten, Pool

    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.1}
    net = SpikingNetwork((1, 28, 28), [Conv(p, 1, 32, 3, padding=1), Pool(p, 2), Conv(p, 32, 64, 3, padding=1),
                                       Pool(p, 2), Flatten(), Dense(p, 3136, 10)])
    for neuron in net.neurons():
        neuron.fused = fused
    return net, lambda x: net(x)  # x: (N, 1, 28, 28, T) → (N, 10, T)


def slayer_cuba(timesteps: int):
    from lava.lib.dl.slayer.block import cuba

    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.1}
    blocks = torch.nn.ModuleList([cuba.Conv(p, 1, 32, 3, padding=1), cuba.Pool(p, 2), cuba.Conv(p, 32, 64, 3, padding=1),
                                  cuba.Pool(p, 2), cuba.Flatten(), cuba.Dense(p, 3136, 10)])

    def forward(x):
        for block in blocks:
            x = block(x)
        return x
    return blocks, forward


def snntorch_net(timesteps: int):
    import snntorch as snn
    from snntorch import utils

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="subtract"),
        torch.nn.AvgPool2d(2), torch.nn.Conv2d(32, 64, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="subtract"), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 10),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="subtract", output=True))

    def forward(x):
        utils.reset(net)
        out = []
        for t in range(x.shape[-1]):
            spk, _ = net(x[..., t])
            out.append(spk)
        return torch.stack(out, -1)
    return net, forward


def spikingjelly_net(timesteps: int):
    from spikingjelly.activation_based import functional, layer, neuron

    net = torch.nn.Sequential(
        layer.Conv2d(1, 32, 3, padding=1), neuron.LIFNode(tau=2.0, v_reset=None), layer.AvgPool2d(2),
        layer.Conv2d(32, 64, 3, padding=1), neuron.LIFNode(tau=2.0, v_reset=None), layer.AvgPool2d(2),
        layer.Flatten(), layer.Linear(3136, 10), neuron.LIFNode(tau=2.0, v_reset=None))
    functional.set_step_mode(net, "m")

    def forward(x):
        functional.reset_net(net)
        return net(x.movedim(-1, 0)).movedim(0, -1)  # multi-step: (T, N, ...)
    return net, forward


def synapses_only(timesteps: int):
    """The workload's synapses with no neurons at all, all T steps as one (N·T) batch and
    pooled by our tile sum: the ceiling of any SNN built on dense PyTorch convolutions (ours
    or a peer's)."""
    from snn2loihi.blocks.synapse import window_sum

    conv1, conv2 = torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.Conv2d(32, 64, 3, padding=1)
    fc = torch.nn.Linear(3136, 10)

    def forward(x):
        n, t = x.shape[0], x.shape[-1]
        y = window_sum(conv1(x.movedim(-1, 0).reshape(t * n, *x.shape[1:-1])), (2, 2), (2, 2), (0, 0))
        y = window_sum(conv2(y), (2, 2), (2, 2), (0, 0))
        return fc(y.flatten(1)).reshape(t, n, -1).movedim(0, -1)
    return torch.nn.ModuleList([conv1, conv2, fc]), forward


CEILING = "synapses only, no neurons (ceiling)"
PYTORCH_LOOP = "ours (PyTorch neuron loop, no compiler)"
DEFAULT_ALLOCATOR = "ours (C library's default allocator)"


@contextlib.contextmanager
def environment(name: str, value: str):
    """Run the enclosed code with ``$name = value``, restoring the variable afterwards."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def neuron_kernel(choice: str):
    """``$SNN2LOIHI_NEURON_KERNEL = choice`` in the enclosed code (``torch``: no compiled loop)."""
    from snn2loihi.neuron import cpu_kernel

    return environment(cpu_kernel.ENV, choice)

FRAMEWORKS = {"ours": ours, "lava-dl slayer CUBA": slayer_cuba, "snntorch": snntorch_net,
              "spikingjelly": spikingjelly_net,
              CEILING: synapses_only}


def training_throughput(make, timesteps: int, steps: int, device: str, repeats: int = 3) -> float:
    """Samples per second of forward + backward + SGD step, after two warm-up steps: the best
    of ``repeats`` timings of ``steps`` steps (the best is the least disturbed by other load;
    single timings varied by ±20 % here)."""
    torch.manual_seed(0)
    module, forward = make(timesteps)
    module.to(device)
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    x = (torch.rand(BATCH, 1, 28, 28, timesteps, device=device) < 0.3).float()
    y = torch.randint(0, 10, (BATCH,), device=device)

    def step():
        loss = F.cross_entropy(forward(x).sum(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    best = 0.0
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, BATCH * steps / (time.perf_counter() - start))
    return best


def forward_identity(timesteps: int) -> int:
    """Spike mismatches between our fused network and the step-by-step reference (float64)."""
    torch.manual_seed(0)
    net, forward = ours(timesteps)
    net.double()
    x = (torch.rand(8, 1, 28, 28, timesteps, dtype=torch.float64) < 0.3).double()
    with torch.no_grad():
        fused = forward(x)
        for neuron in net.neurons():
            neuron.fused = False
        reference = forward(x)
    return int((fused != reference).sum())


def install_peers() -> dict:
    """Install the peers into bench/.peers (no deps: they use this torch); name → status."""
    status = {}
    for name, spec in PEERS.items():
        if not os.path.isdir(os.path.join(PEERS_DIR, name)):
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", PEERS_DIR,
                                   spec], capture_output=True, text=True)
            if proc.returncode:
                status[name] = f"not installed: {proc.stderr.strip().splitlines()[-1][:200]}"
                continue
        status[name] = spec
    sys.path.insert(0, PEERS_DIR)
    return status


# --- emulator vs Lava ----------------------------------------------------------------------
def emulator_vs_lava(samples_lava: int, samples_emulator: int) -> list:
    """For the demo-like and a VGG-style network: emulator and Lava samples/s, their ratio
    (Lava marginal per-sample cost, start-up excluded, and start-up included), mismatches."""
    from emulator_vs_lava import demo_like_network, vgg_like_network  # bench/ is on sys.path

    from snn2loihi.accounting import account
    from snn2loihi.data.encoding import pad_time
    from snn2loihi.sim import int8_conv
    from snn2loihi.sim.emulator import Emulator
    from snn2loihi.sim.lava_runner import run_lava

    def timed(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    rows = []
    for name, net in (("demo-like conv (1x8x8)", demo_like_network()), ("VGG-style conv (1x16x16)", vgg_like_network())):
        rng = np.random.default_rng(0)
        x = pad_time((rng.random((samples_emulator,) + net.input.shape + (16,)) < 0.3).astype(np.uint8),
                     net.latency)
        emulator = Emulator(net)
        emulator.run(x[:64])
        with neuron_kernel("torch"):
            pytorch_loop_rate = samples_emulator / timed(lambda: emulator.run(x, record_all=True))
        with environment(int8_conv.ENV, "0"):
            float_conv = Emulator(net)  # synapses pick their path when built
        float_conv_rate = samples_emulator / timed(lambda: float_conv.run(x, record_all=True))
        start = time.perf_counter()
        result = emulator.run(x, record_all=True)
        emu_s = time.perf_counter() - start
        synops = account(net, x, result).total()["synops"]
        lava_times = {}
        for n in (samples_lava // 2, samples_lava):
            start = time.perf_counter()
            lava = run_lava(net, x[:n], record_all=True)
            lava_times[n] = time.perf_counter() - start
        mismatches = int(sum((lava.spikes[i] != result.spikes[i][:samples_lava]).sum() for i in lava.spikes))
        marginal = (lava_times[samples_lava] - lava_times[samples_lava // 2]) / (samples_lava - samples_lava // 2)
        emu_rate = samples_emulator / emu_s
        rows.append({"network": name, "emulator_samples_per_s": emu_rate,
                     "emulator_samples_per_s_pytorch_neuron_loop": pytorch_loop_rate,
                     "emulator_samples_per_s_float32_convolutions": float_conv_rate,
                     "emulator_int8_convolutions": int8_conv.available(),
                     "emulator_synops_per_s": synops / emu_s,
                     "lava_samples_per_s_marginal": 1 / marginal,
                     "lava_samples_per_s_with_startup": samples_lava / lava_times[samples_lava],
                     "ratio_marginal": emu_rate * marginal,
                     "ratio_with_startup": emu_rate * lava_times[samples_lava] / samples_lava,
                     "mismatched_spikes": mismatches, "samples_compared": samples_lava,
                     "timesteps": int(x.shape[-1])})
    return rows


def matmul_peak() -> dict:
    """float32 and float64 GFLOP/s of a 1024×1024 matmul on this machine (torch)."""
    out = {}
    for dtype in (torch.float32, torch.float64):
        a = torch.rand(1024, 1024, dtype=dtype)
        a @ a
        start = time.perf_counter()
        for _ in range(5):
            a @ a
        out[str(dtype).split(".")[-1]] = 5 * 2 * 1024 ** 3 / (time.perf_counter() - start) / 1e9
    return out


# --- memory (each measurement in a fresh process) -------------------------------------------
def _rss_kb(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, in kB (Linux /proc)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset_peak() -> int:
    """Reset the peak-RSS mark to the current RSS (``/proc/self/clear_refs`` ← 5, Linux ≥ 4.0)
    and return the current RSS (kB). The imports' transient peak would otherwise hide the
    measured step (``ru_maxrss`` never goes down)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _rss_kb("VmRSS")


def child(kind: str, timesteps: int, steps: int) -> None:
    """Print the peak RSS a training step or a 10k-sample emulator run adds on top of the
    process after its imports and set-up (MB), or (``throughput``) our training throughput
    under this process's allocator setting."""
    if kind == "throughput":
        print(json.dumps({"samples_per_s": training_throughput(ours, timesteps, steps, "cpu")}))
        return
    if kind == "train":
        net, forward = ours(timesteps)
        x = (torch.rand(BATCH, 1, 28, 28, timesteps) < 0.3).float()
        base = _reset_peak()
        forward(x).sum().backward()
    else:
        from emulator_vs_lava import demo_like_network

        from snn2loihi.sim.emulator import Emulator

        net = demo_like_network()
        rng = np.random.default_rng(0)  # uint8 draws: no float64 temporary inflating the baseline
        x = (rng.integers(0, 10, size=(10000,) + net.input.shape + (timesteps,), dtype=np.uint8) < 3).view(np.uint8)
        emulator = Emulator(net)
        base = _reset_peak()
        emulator.run(x)
    peak = _rss_kb("VmHWM")
    print(json.dumps({"peak_rss_increase_mb": (peak - base) / 1024}))


def in_child(kind: str, timesteps: int, steps: int = 4, threads: int = 2, **env) -> dict:
    """Run :func:`child` in a fresh process (extra environment ``env``); its JSON line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **env)
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--timesteps", str(timesteps),
                           "--steps", str(steps)], capture_output=True, text=True, env=env, timeout=1200)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{kind} child failed: {proc.stderr[-500:]}")
    return lines[-1]


def peak_rss(kind: str, timesteps: int) -> float:
    return in_child(kind, timesteps)["peak_rss_increase_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per timing (best of 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples-lava", type=int, default=20)
    parser.add_argument("--samples-emulator", type=int, default=2000)
    parser.add_argument("--skip-lava", action="store_true", help="training only (e.g. on a GPU host without Lava)")
    parser.add_argument("--child", choices=["train", "emulate", "throughput"], help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    kept = allocator.keep_freed_memory()  # for every framework measured in this process alike
    sys.path.insert(0, HERE)
    if args.child:
        child(args.child, args.timesteps[0], args.steps)
        return

    from snn2loihi.neuron import cpu_kernel

    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "device": args.device, "threads": torch.get_num_threads(),
                          "compiled_neuron_loop": cpu_kernel.compiled() is not None,
                          "keep_freed_memory": kept,
                          "load_average_at_start": os.getloadavg()[0]},
              "peers": install_peers(), "training_samples_per_s": {}, "threads": {}}
    for t in args.timesteps:
        report["training_samples_per_s"][f"T={t}"] = row = {}
        for name, make in FRAMEWORKS.items():
            try:
                row[name] = training_throughput(make, t, args.steps, args.device)
            except Exception as err:  # a peer that fails is reported, not fatal
                row[name] = f"failed: {type(err).__name__}: {str(err)[:160]}"
            print(f"T={t:2d} {name:22s} {row[name] if isinstance(row[name], str) else f'{row[name]:8.1f} samples/s'}",
                  flush=True)
        row["ours (reference loop)"] = training_throughput(lambda tt: ours(tt, fused=False), t, args.steps, args.device)
        with neuron_kernel("torch"):
            row[PYTORCH_LOOP] = training_throughput(ours, t, args.steps, args.device)
        if args.device == "cpu" and kept:
            row[DEFAULT_ALLOCATOR] = in_child("throughput", t, args.steps,
                                              **{allocator.ENV: "0"})["samples_per_s"]
        peers = [v for k, v in row.items() if not k.startswith("ours") and k != CEILING and isinstance(v, float)]
        print(f"T={t:2d} ours, PyTorch neuron loop {row[PYTORCH_LOOP]:8.1f} samples/s", flush=True)
        row["ratio_to_fastest_peer"] = row["ours"] / max(peers) if peers else None
        row["ceiling_ratio_to_fastest_peer"] = row[CEILING] / max(peers) if peers else None
    report["forward_mismatches_fused_vs_reference"] = {f"T={t}": forward_identity(t) for t in args.timesteps}
    if args.device == "cpu":
        for threads in (1, 2):
            torch.set_num_threads(threads)
            report["threads"][f"training T=8, {threads} thread(s)"] = training_throughput(ours, 8, args.steps, "cpu")
        torch.set_num_threads(2)
        report["memory_mb"] = {f"train step T={t} (peak RSS increase)": peak_rss("train", t) for t in args.timesteps}
        report["memory_mb"].update({f"emulator 10k samples T={t} (peak RSS increase over the loaded input)":
                                    peak_rss("emulate", t) for t in (8, 16, 32)})
    report["machine"]["load_average_before_lava"] = os.getloadavg()[0]
    if not args.skip_lava:
        report["matmul_gflops"] = matmul_peak()
        rows = emulator_vs_lava(args.samples_lava, args.samples_emulator)
        report["emulator_vs_lava"] = rows
        report["emulator_vs_lava_ratio"] = min(r["ratio_marginal"] for r in rows)
        report["emulator_mismatched_spikes"] = sum(r["mismatched_spikes"] for r in rows)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            from emulator_vs_lava import demo_like_network

            from snn2loihi.sim.emulator import Emulator

            net = demo_like_network()
            x = (np.random.default_rng(0).random((2000,) + net.input.shape + (21,)) < 0.3).astype(np.uint8)
            start = time.perf_counter()
            Emulator(net).run(x)
            report["threads"][f"emulator demo-like, {threads} thread(s)"] = 2000 / (time.perf_counter() - start)
        torch.set_num_threads(2)
    report["machine"]["load_average_at_end"] = os.getloadavg()[0]
    os.makedirs(args.out_dir, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    with open(os.path.join(args.out_dir, f"speed{suffix}.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.out_dir, f"speed{suffix}.md"), "w") as handle:
        handle.write(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [f"# Speed ({report['machine']['device']}, {report['machine']['cpus']} CPUs, torch "
             f"{report['machine']['torch']})", "",
             f"Load average (1 min) at start {report['machine']['load_average_at_start']:.2f}, before the Lava "
             f"runs {report['machine']['load_average_before_lava']:.2f}, at end "
             f"{report['machine']['load_average_at_end']:.2f} (Lava's own processes count there): well above 2 "
             f"before the Lava runs means other jobs shared the cores and the figures are unreliable.", "",
             "## Training throughput (samples/s, batch 64, fwd+bwd+SGD, best of 3 timings)", ""]
    for t, row in report["training_samples_per_s"].items():
        cells = ", ".join(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items())
        lines.append(f"- {t}: {cells}")
    lines += ["", f"Fused vs reference forward spike mismatches: {report['forward_mismatches_fused_vs_reference']}"]
    for key in ("threads", "memory_mb", "matmul_gflops"):
        if report.get(key):
            lines += ["", f"## {key}", ""] + [f"- {k}: {v:.1f}" for k, v in report[key].items()]
    for row in report.get("emulator_vs_lava", []):
        lines += ["", f"## Emulator vs Lava: {row['network']}", ""] + [f"- {k}: {v}" for k, v in row.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
