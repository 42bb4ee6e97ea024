"""``snn2loihi deploy NET [--input X.npy --labels Y.npy] [--check-only] [--hard-out H.net]``."""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from ..errors import InputError
from .common import check_writable


def register(sub) -> None:
    p = sub.add_parser("deploy", help="run a netx file on Loihi 2 (needs lava-loihi), or check what deployment costs",
                       description="Runs NET on a Loihi 2 board through Lava's hardware path (Loihi2HwCfg, SLURM "
                                   "host selection) when Intel's lava-loihi extension is installed. Soft-reset "
                                   "layers need a microcoded neuron on the chip, which is not shipped: the "
                                   "hard-reset export (stock CUBA, thresholds rebalanced on X) is deployed instead, "
                                   "and with --input the accuracy of both resets on the emulator is printed first. "
                                   "--check-only does everything that needs no hardware.")
    p.add_argument("net", help="netx HDF5 file")
    p.add_argument("--input", help="input X (.npy) (N, C, H, W, T) or (N, F, T): reset comparison and hardware input")
    p.add_argument("--labels", help="integer classes (.npy, shape (N,)) for accuracies")
    p.add_argument("--samples", type=int, help="use the first N samples only")
    p.add_argument("--no-rebalance", action="store_true", help="keep the thresholds in the hard-reset export")
    p.add_argument("--hard-out", help="write the hard-reset export (stock netx CUBA) to this file")
    p.add_argument("--check-only", action="store_true", help="no hardware: reset comparison and export only")
    p.add_argument("--partition", help="SLURM partition of the Loihi 2 boards")
    p.add_argument("--board", help="SLURM board (node) name")
    p.add_argument("--profile", action="store_true", help="measure power and time per step on the board")
    p.add_argument("--out", help="hardware output spikes Y (.npy) (N, F_out, T); measured energy goes to Y.json")
    p.set_defaults(func=run)


def _labels(path: str, n: int) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        y = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy array ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
        raise InputError(f"{path}: labels must be a 1-D integer array")
    if y.shape[0] < n:
        raise InputError(f"{path}: {y.shape[0]} labels for {n} samples")
    return y[:n]


def run(args: argparse.Namespace) -> int:
    from ..data.encoding import pad_time
    from ..deploy import (HardwareUnavailable, compare_resets, hardware_missing_message, loihi_extension_status,
                          run_on_loihi2, soft_layers, stock_netx_problems, to_hard_reset)
    from ..netx import read_network, write_network
    from .common import load_input

    for path in (args.hard_out, args.out):
        if path:
            check_writable(path)
    if args.samples is not None and args.samples < 1:
        raise InputError("--samples must be at least 1")
    missing = loihi_extension_status()
    if missing and not args.check_only:  # fail fast: nothing below can reach the board
        raise HardwareUnavailable(f"{args.net}: {hardware_missing_message(missing)}; CPU simulation is available: "
                                  f"snn2loihi simulate {args.net} --backend lava (reset cost: snn2loihi deploy "
                                  f"{args.net} --check-only --input X.npy)")
    net = read_network(args.net)
    x = labels = None
    if args.input:
        x = load_input(args.input, net)[:args.samples]
        x = pad_time(x, net.padding(x.shape[-1]))
        labels = _labels(args.labels, x.shape[0]) if args.labels else None
    elif args.labels:
        raise InputError("--labels needs --input")
    deployable, rebalanced = net, None
    if soft_layers(net):
        print(f"{args.net}: layers {soft_layers(net)} reset softly (CUBA_SOFT); the chip needs a microcoded neuron "
              f"for that, so the hard-reset export (stock CUBA) is what goes to the board.")
        if x is not None:
            comparison = compare_resets(net, x, labels, rebalance=not args.no_rebalance)
            print(comparison.format_table())
            rebalanced = comparison.rebalance
        elif not args.no_rebalance:
            print("thresholds unchanged: give --input to rebalance them and to see what each reset costs")
        deployable = rebalanced.net if rebalanced is not None else to_hard_reset(net)
    if args.hard_out:
        write_network(deployable, args.hard_out)
        print(f"wrote {args.hard_out} (stock netx CUBA neurons"
              f"{', rebalanced thresholds' if rebalanced is not None else ''})")
    problems = stock_netx_problems(deployable)
    if args.check_only:
        print("stock netx can load the deployable network" if not problems else
              "not deployable yet: " + "; ".join(problems))
        return 0
    if problems:
        raise InputError(f"{args.net}: {'; '.join(problems)}")
    if x is None:
        raise InputError("--input is needed to run on the board")
    with tempfile.TemporaryDirectory() as folder:
        target = args.net if deployable is net else os.path.join(folder, "hard_reset.net")
        if target != args.net:
            write_network(deployable, target)
        hw = run_on_loihi2(target, x, partition=args.partition, board=args.board, profile=args.profile)
    if args.out:
        np.save(args.out, hw.spikes.reshape(hw.spikes.shape[0], -1, hw.spikes.shape[-1]).astype(np.int32))
        if hw.measured is not None:
            with open(os.path.splitext(args.out)[0] + ".json", "w") as handle:
                json.dump(hw.measured, handle, indent=2)
    if labels is not None:
        counts = hw.spikes.reshape(hw.spikes.shape[0], -1, hw.spikes.shape[-1]).sum(-1)
        print(f"Loihi 2 accuracy: {float((counts.argmax(-1) == labels).mean()):.4f} on {len(labels)} samples")
    if hw.measured is not None:
        print(f"measured energy per inference: {hw.measured['total_energy_nj']:.4g} nJ total, "
              f"{hw.measured['dynamic_energy_nj']:.4g} nJ dynamic")
    return 0
