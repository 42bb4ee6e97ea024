"""``snn2loihi plan NET --chip {loihi1,loihi2} [--json]``: neurocores per layer."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("plan", help="map every layer onto Loihi neurocores and report cores, chips and limits",
                       description="Cuts every layer into cores under the chip's per-core limits (neurons, fan-in "
                                   "and fan-out axons, synaptic memory) and prints cores, chips, memory use per "
                                   "core and the binding limit per layer. Exits 2 with the fix to try when a layer "
                                   "cannot be mapped.")
    p.add_argument("net", help="netx HDF5 file")
    p.add_argument("--chip", choices=("loihi1", "loihi2"), default="loihi1")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..netx import read_network
    from ..planning import plan_network

    plan = plan_network(read_network(args.net), args.chip)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.format_table())
    return 0
