"""Command line: ``snn2loihi {demo,info,simulate,energy}``.

Every command exits 0 on success. Bad input (missing or malformed files, wrong shapes,
unsupported layers) prints one line ``snn2loihi: error: FILE: problem`` and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from typing import Optional, Sequence

import numpy as np

from .errors import InputError, Snn2LoihiError

EXIT_BAD_INPUT = 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``snn2loihi`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except Snn2LoihiError as err:
        print(f"snn2loihi: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("snn2loihi: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn2loihi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train, quantize, export, simulate (emulator + Lava CPU) and account",
                       description="Train a conv soft-reset LIF SNN on scikit-learn's handwritten digits, "
                                   "export DIR/model.net, evaluate it with the emulator and on Lava CPU, "
                                   "write DIR/report.json and DIR/report.png.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--timesteps", type=int, default=16, help="rate-coding window T (default 16)")
    p.add_argument("--lava-samples", type=int, default=100, help="test samples run on Lava CPU (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)

    p = sub.add_parser("info", help="print the layer table of a netx file")
    p.add_argument("net", help="netx HDF5 file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_info)

    p = sub.add_parser("simulate", help="run a netx file on the emulator or on Lava CPU",
                       description="X (.npy) is (N, C, H, W, T) or (N, F, T): binary spikes when the input "
                                   "layer has no neuron, else the integers the input neuron receives each "
                                   "step. Y (.npy) holds the last layer's spikes (N, F_out, T + latency): the "
                                   "input is padded with one silent step per synapse layer so the whole "
                                   "response is seen (--no-pad keeps T).")
    p.add_argument("net", help="netx HDF5 file")
    p.add_argument("--input", required=True, help="input array X (.npy)")
    p.add_argument("--backend", choices=("emulator", "lava"), default="emulator")
    p.add_argument("--out", required=True, help="output spikes Y (.npy)")
    p.add_argument("--record-all", action="store_true",
                   help="also write every layer's spikes to OUT with suffix .npz (keys layer_<index>)")
    p.add_argument("--no-pad", action="store_true", help="do not append latency padding to the input")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("energy", help="count spikes, synaptic ops, neuron updates and energy for an input",
                       description="Runs the emulator on X and prints per-layer spikes, synaptic operations, "
                                   "neuron updates and energy (Loihi 1, Davies et al. 2018) against the ANN "
                                   "baseline (45 nm FP32 MACs, Horowitz 2014).")
    p.add_argument("net", help="netx HDF5 file")
    p.add_argument("--input", required=True, help="input array X (.npy), as for simulate")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", help="also write a PNG report to this path")
    p.add_argument("--no-pad", action="store_true", help="do not append latency padding to the input")
    p.set_defaults(func=_energy)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    for name in ("epochs", "timesteps", "lava_samples"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    report = run_demo(args.out, DemoConfig(timesteps=args.timesteps, epochs=args.epochs,
                                           lava_samples=args.lava_samples, seed=args.seed))
    acc = report["accuracy"]
    print(f"\naccuracy: float {acc['float']:.4f} | fixed point (emulator, {acc['test_samples']} samples) "
          f"{acc['fixed_point']:.4f} | Lava CPU ({acc['lava_samples']} samples) {acc['lava']:.4f}")
    print(f"Lava vs emulator mismatched spikes: {report['lava_vs_emulator']['mismatched_spikes']}")
    print(f"wrote {os.path.join(args.out, 'model.net')}, report.json, report.png")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .netx import read_network
    from .netx.info import layer_table

    net = read_network(args.net)
    rows = layer_table(net)
    if args.json:
        print(json.dumps({"file": args.net, "latency": net.latency, "layers": rows}, indent=2))
        return 0
    columns = ["index", "type", "shape", "neuron", "iDecay", "vDecay", "vThMant", "weights", "weight_range",
               "weight_bits", "weight_exp"]
    table = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in table)) for k, c in enumerate(columns)]
    print(f"{args.net}: {len(net.layers)} layers, latency {net.latency} steps")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    return 0


def load_input(path: str, net) -> np.ndarray:
    """Load and validate X for ``net``: shape (N, *input_shape, T), integer values,
    binary when the input layer has no neuron, 16-bit when it drives an input neuron."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable .npy array ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"{path}: expected one .npy array, found an .npz archive")
    expected = tuple(net.input.shape)
    if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected or x.shape[0] < 1 or x.shape[-1] < 1:
        raise InputError(f"{path}: array shape {x.shape} does not fit the network input; "
                         f"expected (N, {', '.join(map(str, expected))}, T)")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path}: array dtype {x.dtype} is not numeric")
    if x.dtype.kind == "f" and (not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x))):
        raise InputError(f"{path}: values must be integers")
    if net.input.neuron is None and x.size and (x.min() < 0 or x.max() > 1):
        raise InputError(f"{path}: values must be binary spikes (0/1) for a network whose input layer "
                         f"has no neuron; found range [{x.min()}, {x.max()}]")
    if x.size and (x.min() < -(1 << 15) or x.max() >= 1 << 15):
        raise InputError(f"{path}: input currents must fit in 16 bits")
    return x.astype(np.int64)


def _run(args: argparse.Namespace, backend: str, record_all: bool):
    from .data.encoding import pad_time
    from .netx import read_network

    net = read_network(args.net)
    x = load_input(args.input, net)
    if not args.no_pad:
        x = pad_time(x, net.latency)
    if backend == "lava":
        from .sim.lava_runner import run_lava

        result = run_lava(net, x, record_all=record_all)
    else:
        from .sim.emulator import Emulator

        result = Emulator(net).run(x, record_all=record_all)
    return net, x, result


def _simulate(args: argparse.Namespace) -> int:
    _check_writable(args.out)
    net, _, result = _run(args, args.backend, args.record_all)
    y = result.output
    np.save(args.out, y.reshape(y.shape[0], -1, y.shape[-1]).astype(np.int32))
    if args.record_all:
        npz = os.path.splitext(args.out)[0] + ".npz"
        np.savez_compressed(npz, **{f"layer_{i}": s for i, s in result.spikes.items()})
        print(f"wrote {args.out} and {npz}")
    else:
        print(f"wrote {args.out}")
    return 0


def _energy(args: argparse.Namespace) -> int:
    from .accounting import account

    net, x, result = _run(args, "emulator", record_all=True)
    acc = account(net, x, result)
    if args.plot:
        from .report_plots import plot_report, sample_spikes

        _check_writable(args.plot)
        plot_report(acc, sample_spikes(net, result, sample=0, x=x), args.plot)
    print(json.dumps(acc.to_dict(), indent=2) if args.json else acc.format_table())
    return 0


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory")


if __name__ == "__main__":
    sys.exit(main())
