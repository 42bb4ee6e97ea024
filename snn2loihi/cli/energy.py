"""``snn2loihi energy NET --input X.npy [--json] [--plot PNG]``."""
from __future__ import annotations

import argparse
import json

from .common import add_input_arguments, check_writable, run_file


def register(sub) -> None:
    p = sub.add_parser("energy", help="count spikes, synaptic ops, neuron updates and energy for an input",
                       description="Runs the emulator on X and prints per-layer spikes, synaptic operations, "
                                   "neuron updates and energy (Loihi 1, Davies et al. 2018) against the ANN "
                                   "baseline (45 nm FP32 MACs, Horowitz 2014).")
    add_input_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", help="also write a PNG report to this path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..accounting import account

    if args.plot:
        check_writable(args.plot)
    net, x, result = run_file(args, "emulator", record_all=True)
    acc = account(net, x, result)
    if args.plot:
        from ..report_plots import plot_report, sample_spikes

        plot_report(acc, sample_spikes(net, result, sample=0, x=x), args.plot)
    print(json.dumps(acc.to_dict(), indent=2) if args.json else acc.format_table())
    return 0
