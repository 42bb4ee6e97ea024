"""``snn2loihi simulate NET --input X.npy --backend {emulator,lava} --out Y.npy``."""
from __future__ import annotations

import argparse
import os

import numpy as np

from .common import add_input_arguments, check_writable, run_file


def register(sub) -> None:
    p = sub.add_parser("simulate", help="run a netx file on the emulator or on Lava CPU",
                       description="X (.npy) is (N, C, H, W, T) or (N, F, T): binary spikes when the input "
                                   "layer has no neuron, else the integers the input neuron receives each "
                                   "step. Y (.npy) holds the last layer's spikes (N, F_out, T + padding): the "
                                   "input is padded with silent steps (the latency, one per synapse layer, or "
                                   "up to the end of the last firing window) so the whole response is seen "
                                   "(--no-pad keeps T).")
    add_input_arguments(p)
    p.add_argument("--backend", choices=("emulator", "lava"), default="emulator")
    p.add_argument("--out", required=True, help="output spikes Y (.npy)")
    p.add_argument("--record-all", action="store_true",
                   help="also write every layer's spikes to OUT with suffix .npz (keys layer_<index>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_writable(args.out)
    _, _, result = run_file(args, args.backend, args.record_all)
    y = result.output
    np.save(args.out, y.reshape(y.shape[0], -1, y.shape[-1]).astype(np.int32))
    if args.record_all:
        npz = os.path.splitext(args.out)[0] + ".npz"
        np.savez_compressed(npz, **{f"layer_{i}": s for i, s in result.spikes.items()})
        print(f"wrote {args.out} and {npz}")
    else:
        print(f"wrote {args.out}")
    sat = result.overflow  # counted by the emulator only (Lava saturates the same way, uncounted)
    if sat.current_wraps or sat.voltage_clips or result.conv_wraps:
        print(f"note: 24-bit state saturation (the chip does the same): {sat.current_wraps} current wraps, "
              f"{sat.voltage_clips} voltage clips, {result.conv_wraps} wrapped conv sums")
    return 0
