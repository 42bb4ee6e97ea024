"""``snn2loihi report NET --input X.npy [--labels Y.npy] --out DIR``: everything before the board."""
from __future__ import annotations

import argparse
import os

from ..errors import InputError
from .common import add_input_arguments
from ..atomic import write_json
from .energy import account_file, add_accounting_arguments, check_folder


def register(sub) -> None:
    p = sub.add_parser("report", help="energy, core mapping on Loihi 1 and 2, and the cost of the hard reset, "
                                      "in one folder",
                       description="Writes DIR/report.json, DIR/report.txt, DIR/report.png and one PNG per panel "
                                   "(firing_rate, synops, energy, raster): the accounting of X (as `snn2loihi "
                                   "energy`), the core mapping on loihi1 and loihi2 (as `snn2loihi plan`), and, for "
                                   "soft-reset networks, the emulator accuracy of the soft network and its "
                                   "hard-reset exports (as `snn2loihi deploy --check-only`).")
    add_input_arguments(p)
    add_accounting_arguments(p)
    p.add_argument("--labels", help="integer classes (.npy, shape (N,)) for the reset comparison's accuracies")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..deploy import compare_resets, loihi_extension_status, soft_layers
    from ..planning import CHIPS, PlanningError, plan_network
    from ..report_plots import plot_report, sample_spikes, write_plots
    from .deploy import _labels

    check_folder(args.out)
    net, x, result, acc, note = account_file(args)
    labels = _labels(args.labels, x.shape[0]) if args.labels else None
    plans, plan_text = {}, []
    for name in CHIPS:
        try:
            plan = plan_network(net, name)
            plans[name] = plan.to_dict()
            plan_text.append(plan.format_table())
        except PlanningError as err:
            plans[name] = {"error": str(err)}
            plan_text.append(f"{name}: cannot be mapped: {err}")
    report = {"file": args.net, "energy": acc.to_dict(), "plan": plans,
              "hardware": {"lava_loihi": loihi_extension_status() or "installed"}}
    if note:
        report["energy"]["planning_note"] = note
    sections = [acc.format_table()] + ([note] if note else []) + [""] + plan_text
    if soft_layers(net):
        try:
            comparison = compare_resets(net, x, labels)
            report["resets"] = comparison.to_dict()
            sections += ["", comparison.format_table()]
        except InputError as err:  # residual skips / v_init have no hard-reset export
            report["resets"] = {"error": str(err)}
            sections += ["", f"Reset comparison: {err}"]
    text = "\n".join(sections)
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "report.json"), report)
    with open(os.path.join(args.out, "report.txt"), "w") as handle:
        handle.write(text + "\n")
    spikes = sample_spikes(net, result, sample=0, x=x)
    plot_report(acc, spikes, os.path.join(args.out, "report.png"))
    write_plots(acc, spikes, args.out)
    print(text)
    print(f"\nwrote report.json, report.txt, report.png and the panel plots in {args.out}")
    return 0
