"""``snn2loihi convert --ann CKPT --rule R --block B --timesteps T --calib N --out DIR``.

Converts a trained ANN checkpoint (``models/ann.py``'s ``save_checkpoint``: architecture +
state dict, read with ``torch.load(weights_only=True)``) into a spiking network and writes

- ``DIR/model.net``: the netx file for T (what ``simulate``, ``energy`` and ``info`` take);
- ``DIR/report.json``: ANN accuracy, SNN accuracy (float and Loihi fixed point) at every T
  of the sweep, the emulator check and the per-layer conversion error at T;
- ``DIR/report.txt``: the same as tables.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import zipfile

import numpy as np

from ..errors import InputError

DATASETS = ("fashion-mnist", "digits")


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a trained ANN into a spiking network (netx + report)",
                       description="ANN -> soft-reset IF SNN by threshold balancing (max, percentile), the "
                                   "trained clip of a clip-floor-shift (QCFS) ANN (clip) or threshold tuning "
                                   "(tuned), with standard or restructured residual blocks; "
                                   "writes DIR/model.net for --timesteps and DIR/report.{json,txt} with the "
                                   "accuracy at every T of --sweep.")
    p.add_argument("--ann", required=True, help="ANN checkpoint (models/ann.py save_checkpoint)")
    p.add_argument("--rule", choices=("max", "percentile", "clip", "tuned"), default="tuned")
    p.add_argument("--block", choices=("standard", "restructured"), default="restructured")
    p.add_argument("--timesteps", type=int, default=32, help="T of the exported network")
    p.add_argument("--calib", type=int, default=256, help="calibration images (from the training set)")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--v-init", choices=("half", "zero"), default="half")
    p.add_argument("--bias", choices=("clock", "timed", "current"), default="clock",
                   help="clock: biases as weights from a clock channel (exact at any depth); timed: bias currents")
    p.add_argument("--correct", action="store_true",
                   help="bias correction: cancel each channel's mean error on the calibration batch through its bias")
    p.add_argument("--hold", type=int, default=0,
                   help="steps each layer integrates before it may fire (removes deviation error in deep "
                        "networks; latency (hold + 1) per layer); 0: none")
    p.add_argument("--readout", type=int, default=1, metavar="K",
                   help="the output layer reads its charge out over R = K·T steps at a K times lower threshold "
                        "(finer class scores, fewer ties; K > 1 needs --hold >= every T); 1: R = T")
    p.add_argument("--headroom", type=float, default=2.0,
                   help="with --hold: membrane range kept free of the 24-bit clip, in (T + max row sum of |W|) "
                        "thresholds; lower buys finer weights (docs/residual.md, 'The v headroom')")
    p.add_argument("--sweep", default="4,8,16,32,64,128", help="comma-separated T values to evaluate")
    p.add_argument("--data", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--data-dir", help="dataset folder (fashion-mnist)")
    p.add_argument("--test", type=int, default=0, help="evaluate on the first N test images (0: all)")
    p.add_argument("--check", type=int, default=16, help="test images also run on the emulator (0: none)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def load_ann(path: str):
    """(model, arch) from an ANN checkpoint; :class:`InputError` naming the file otherwise."""
    try:
        from models.ann import load_checkpoint
    except ImportError:
        raise InputError("models/ann.py is not importable: run from the repository root (or put it on "
                         "PYTHONPATH)") from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        model, arch, _ = load_checkpoint(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            TypeError, OSError) as err:
        raise InputError(f"{path}: not an ANN checkpoint ({str(err).splitlines()[0][:200]})") from None
    return model, arch


def load_data(name: str, data_dir):
    if name == "digits":
        from ..data.digits import load_digits_split

        return load_digits_split()
    from ..data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(data_dir)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..conversion import convert
    from ..netx import write_network
    from ..sim.emulator import Emulator

    sweep = sorted({int(t) for t in args.sweep.split(",") if t.strip()} | {args.timesteps})
    if min(sweep) < 1 or args.calib < 1 or args.hold < 0 or args.readout < 1:
        raise InputError(f"--sweep/--timesteps must be >= 1, --calib >= 1, --hold >= 0 and --readout >= 1 (got "
                         f"{sweep}, {args.calib}, {args.hold}, {args.readout})")
    if args.readout > 1 and args.hold < max(sweep):
        raise InputError(f"--readout {args.readout} needs --hold >= every T of the sweep ({max(sweep)}), got "
                         f"--hold {args.hold}: the output must hold all of its charge before it reads it out")
    ann, arch = load_ann(args.ann)
    data = load_data(args.data, args.data_dir)
    x_test, y_test = (data.x_test[:args.test], data.y_test[:args.test]) if args.test else (data.x_test, data.y_test)
    calib = torch.as_tensor(data.x_train[:args.calib])
    os.makedirs(args.out, exist_ok=True)
    with torch.no_grad():
        ann_acc = float(np.mean(np.concatenate([ann(torch.as_tensor(x_test[k:k + 500])).argmax(1).numpy()
                                                for k in range(0, len(x_test), 500)]) == y_test))
    options = {"rule": args.rule, "block": args.block, "percentile": args.percentile, "v_init": args.v_init,
               "bias": args.bias, "correct": args.correct, "hold": args.hold,
               "headroom": args.headroom}
    rows, exported = [], None
    for t in sweep:
        result = convert(ann, calib, t, readout=args.readout * t, **options)
        acc = {mode: float(np.mean(result.counts(x_test, fixed_point=mode).argmax(1) == y_test))
               for mode in (False, True)}
        rows.append({"timesteps": t, "readout": result.readout, "accuracy_snn_float": acc[False],
                     "accuracy_snn_fixed_point": acc[True], "latency": result.latency})
        print(f"T={t:4d}: SNN float {acc[False]:.4f}  fixed point {acc[True]:.4f}  (ANN {ann_acc:.4f})")
        if t == args.timesteps:
            exported = result
    net, qreport = exported.export()
    write_network(net, os.path.join(args.out, "model.net"))
    mismatched = None
    if args.check:
        x = exported.encode(x_test[:args.check], pad=True)
        emulated = Emulator(net).run(x).output.sum(-1).reshape(len(x), -1)
        mismatched = int((emulated != exported.counts(x_test[:args.check])).sum())
    report = {"ann": args.ann, "arch": arch, "data": args.data, "test_samples": len(x_test),
              "calib_samples": len(calib), "options": {**options, "readout": args.readout}, "accuracy_ann": ann_acc, "sweep": rows,
              "exported_timesteps": args.timesteps, "latency": net.latency,
              "steps_per_sample": args.timesteps + net.padding(args.timesteps),
              "emulator_check": {"samples": min(args.check, len(x_test)), "mismatched_counts": mismatched},
              "thresholds": exported.thresholds, "conversion_error": exported.report.to_dict(),
              "quantization": qreport.to_dict()}
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "report.txt"), "w") as f:
        f.write("\n".join([f"ANN accuracy {ann_acc:.4f} on {len(x_test)} test images"]
                          + [f"T={r['timesteps']}: float {r['accuracy_snn_float']:.4f}, fixed point "
                             f"{r['accuracy_snn_fixed_point']:.4f}" for r in rows]
                          + ["", exported.report.table(), "", qreport.summary()]) + "\n")
    print(f"wrote {args.out}/model.net (T = {args.timesteps}, latency {net.latency}) and report.json/.txt; "
          f"emulator vs torch count mismatches: {mismatched}")
    return 0
