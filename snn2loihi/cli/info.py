"""``snn2loihi info NET``: the layer table of a netx file."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("info", help="print the layer table of a netx file")
    p.add_argument("net", help="netx HDF5 file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..netx import read_network
    from ..netx.info import layer_table

    net = read_network(args.net)
    rows = layer_table(net)
    if args.json:
        print(json.dumps({"file": args.net, "latency": net.latency, "layers": rows}, indent=2))
        return 0
    columns = ["index", "type", "shape", "neuron", "iDecay", "vDecay", "vThMant", "weights", "weight_range",
               "weight_bits", "weight_exp"] + (["fires"] if any("fires" in r for r in rows) else [])
    table = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in table)) for k, c in enumerate(columns)]
    print(f"{args.net}: {len(net.layers)} layers, latency {net.latency} steps")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    return 0
