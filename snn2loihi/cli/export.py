"""``snn2loihi export CKPT --out NET [--inputs N]``: a trained checkpoint as a netx file."""
from __future__ import annotations

import argparse
import os

import numpy as np

from .common import check_writable


def register(sub) -> None:
    p = sub.add_parser("export", help="write the netx file of a trained checkpoint",
                       description="Quantize the spiking model of a `snn2loihi train` checkpoint to Loihi fixed "
                                   "point and write NET, which `simulate`, `energy` and `info` take. With "
                                   "--inputs N also write N test samples as the input array the file takes "
                                   "(NET without .net + .inputs.npy, unpadded) and their labels (.labels.npy).")
    p.add_argument("checkpoint", help="checkpoint.pt written by `snn2loihi train`")
    p.add_argument("--out", required=True, help="netx file to write")
    p.add_argument("--inputs", type=int, default=0, help="also write this many test inputs and labels")
    p.add_argument("--data-dir", help="dataset folder for --inputs (default: the recipe's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.deploy import export_classifier, load_classifier

    check_writable(args.out)
    model, state = load_classifier(args.checkpoint)
    net, report = export_classifier(model, args.out)
    print(report.summary())
    print(f"wrote {args.out}: {len(net.layers)} layers, latency {net.latency}, T = {model.timesteps}")
    if args.inputs > 0:
        from ..training.inputs import InputEncoding, load_dataset
        from ..training.trainer import TEST_EPOCH

        recipe = state["recipe"]
        data_cfg = {**recipe["data"], **({"data_dir": args.data_dir} if args.data_dir else {})}
        data, _ = load_dataset(data_cfg)
        index = np.arange(min(args.inputs, len(data.x_test)))
        x = data.x_test[index]
        if model.encoder is None:
            x = InputEncoding(recipe["data"]["input"], recipe["seed"])(x, index, model.timesteps, TEST_EPOCH).numpy()
        stem = os.path.splitext(args.out)[0]
        np.save(stem + ".inputs.npy", model.chip_input(x, 0))
        np.save(stem + ".labels.npy", data.y_test[index])
        print(f"wrote {stem}.inputs.npy ({len(index)} test samples, T = {model.timesteps}) and {stem}.labels.npy")
    return 0
