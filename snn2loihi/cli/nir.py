"""``snn2loihi nir export NET --out G.nir`` and ``snn2loihi nir import G.nir --out NET``."""
from __future__ import annotations

import argparse
import sys
import warnings

from .common import check_writable


def register(sub) -> None:
    p = sub.add_parser("nir", help="NIR interchange: export a netx file to NIR, import a NIR graph as netx",
                       description="export: netx file or training checkpoint → NIR graph of the Loihi integers "
                                   "(soft reset is not expressible in NIR: written as v_reset = 0 with a warning). "
                                   "import: NIR graph (snnTorch, Norse, SpikingJelly, sinabs, ...) → our "
                                   "blocks → Loihi fixed point → netx file.")
    nir_sub = p.add_subparsers(dest="nir_command", required=True, metavar="{export,import}")
    e = nir_sub.add_parser("export", help="netx file or training checkpoint → NIR graph")
    e.add_argument("net", help="netx HDF5 file, or a checkpoint of `snn2loihi train` (exported as its netx file "
                               "would be)")
    e.add_argument("--out", required=True, help="NIR file to write")
    e.add_argument("--dt", type=float, default=1e-4, help="Euler step of the time constants (default 1e-4)")
    e.set_defaults(func=run_export)
    i = nir_sub.add_parser("import", help="NIR graph → netx file")
    i.add_argument("graph", help="NIR HDF5 file")
    i.add_argument("--out", required=True, help="netx file to write")
    i.add_argument("--dt", type=float, default=1e-4, help="the exporter's Euler step (snnTorch, Lava: 1e-4)")
    i.add_argument("--reset", choices=("graph", "soft", "hard"), default="graph",
                   help="graph: as the graph says (soft only where snn2loihi marked it); soft/hard: force (snnTorch "
                        "and SpikingJelly write v_reset = 0 even for their subtractive reset)")
    i.set_defaults(func=run_import)


def _network(path: str):
    """The fixed-point network of a netx file, or of a training checkpoint (quantized as
    `snn2loihi export` would write it)."""
    import os

    import h5py

    from ..netx import read_network

    if os.path.isfile(path) and not h5py.is_hdf5(path):
        from ..lava_imports import quiet_import

        # the trainer imports lava-dl's slayer, which prints banners on stdout
        model, _ = quiet_import("snn2loihi.training.deploy").load_classifier(path)
        return model.to_ir()[0]
    return read_network(path)


def run_export(args: argparse.Namespace) -> int:
    from ..nir_io import SoftResetWarning, write_nir

    check_writable(args.out)
    net = _network(args.net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SoftResetWarning)
        write_nir(net, args.out, dt=args.dt)
    for w in caught:
        print(f"snn2loihi: WARNING: {w.message}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..netx import write_network
    from ..nir_io import nir_to_blocks
    from ..quantize import quantize_network

    check_writable(args.out)
    imported = nir_to_blocks(args.graph, dt=args.dt, reset=args.reset)
    net, report = quantize_network(imported.model)
    write_network(net, args.out)
    print("\n".join(imported.notes))
    print(report.summary())
    print(f"wrote {args.out}")
    return 0
