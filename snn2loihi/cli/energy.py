"""``snn2loihi energy NET --input X.npy [--backend B] [--preset P] [--json] [--out DIR]``."""
from __future__ import annotations

import argparse
import json
import os

from ..atomic import write_json
from ..errors import InputError
from .common import add_input_arguments, check_writable, run_file

SNN_PRESETS = ("loihi1", "loihi1-routing", "loihi2")
ANN_PRESETS = ("fp32", "fp16", "int8")


def register(sub) -> None:
    p = sub.add_parser("energy", help="count spikes, synaptic ops, neuron updates and energy for an input",
                       description="Runs X through the emulator (or Lava CPU on a subset) and prints per-layer "
                                   "spikes, synaptic operations (dense and effective), spike messages, neuron "
                                   "updates and energy: the Loihi event model (default Loihi 1, Davies et al. "
                                   "2018), the compute-only formula papers use and the ANN baseline (45 nm, "
                                   "Horowitz 2014), each with its source.")
    add_input_arguments(p)
    add_accounting_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", help="also write the one-page PNG report to this path")
    p.add_argument("--out", help="folder for energy.json and the plots (firing_rate, synops, energy, raster .png)")
    p.set_defaults(func=run)


def add_accounting_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend``, ``--samples``, ``--preset``, ``--ann``: shared by energy and report."""
    p.add_argument("--backend", choices=("emulator", "lava"), default="emulator",
                   help="count from the emulator (default) or from a Lava CPU run (use --samples for a subset)")
    p.add_argument("--samples", type=int, help="use the first N samples of X only")
    p.add_argument("--preset", choices=SNN_PRESETS, default="loihi1",
                   help="event model: loihi1 (Davies et al. 2018, Table 2, pre-silicon), loihi1-routing (plus "
                        "1.7 pJ per spike message), loihi2 (no published constants: counts only)")
    p.add_argument("--ann", choices=ANN_PRESETS, default="fp32",
                   help="Horowitz 2014 precision of the ANN baseline and the compute-only formula")


def account_file(args: argparse.Namespace):
    """Run ``args.net`` on ``args.input`` and account it with the chosen presets.

    Returns:
        (network, padded input, SimResult, Accounting, planning note or None): the core
        mapping of the preset's chip gives the spike messages; when the network cannot be
        mapped the note says why and messages are omitted.
    """
    from ..accounting import ANN_PRESETS as ANN, PRESET_CHIPS, SNN_PRESETS as SNN, account
    from ..planning import PlanningError, plan_network

    if args.samples is not None and args.samples < 1:
        raise InputError("--samples must be at least 1")
    net, x, result = run_file(args, args.backend, record_all=True)
    note = None
    try:
        plan = plan_network(net, PRESET_CHIPS[args.preset])
    except PlanningError as err:
        plan, note = None, f"no spike messages: {err}"
    acc = account(net, x, result, snn_model=SNN[args.preset], ann_model=ANN[args.ann], plan=plan,
                  backend=args.backend)
    return net, x, result, acc, note


def check_folder(path: str) -> None:
    """Raise InputError unless ``path`` is a folder or can be created (its parent exists)."""
    if os.path.isdir(path):
        return
    if os.path.exists(path):
        raise InputError(f"{path}: exists and is not a folder")
    check_writable(path)


def run(args: argparse.Namespace) -> int:
    from ..report_plots import plot_report, sample_spikes, write_plots

    if args.plot:
        check_writable(args.plot)
    if args.out:
        check_folder(args.out)
    net, x, result, acc, note = account_file(args)
    report = acc.to_dict()
    if note:
        report["planning_note"] = note
    spikes = sample_spikes(net, result, sample=0, x=x)
    if args.plot:
        plot_report(acc, spikes, args.plot)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "energy.json"), report)
        write_plots(acc, spikes, args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(acc.format_table() + (f"\n{note}" if note else ""))
        if args.out:
            print(f"wrote {os.path.join(args.out, 'energy.json')} and the plots in {args.out}")
    return 0
