#!/usr/bin/env python
"""A held conversion run on spike counts against the same run stepped through time, in one process.

    .venv/bin/python bench/held_counts.py [--depths 20,110] [--timesteps 16,32] [--images 48] \\
        [--calib 32] [--ann-dir runs/conv/ann] [--threads 2]

For each QCFS ResNet of width 8 (the checkpoint ``resnet{depth}_w8_qcfs-L8.pt`` from
``--ann-dir`` when it is there, else the untrained network: the work of both runs does not
depend on the weights' values) converted with tuned thresholds, bias correction and a hold
h = T, it times

- ``convert``: the calibration pass on counts, and with every batch forced through the
  step-by-step fallback;
- ``ConversionResult.counts`` on the first Fashion-MNIST test images: on counts
  (``collapse=True``) and stepped through T + h steps per layer, fixed point and float,

and prints the ratios. It also counts the output counts where the two runs differ (0 in fixed
point; float32 may differ where a charge sits within rounding of a multiple of θ).
Writes ``bench/results/held_counts.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import snn2loihi  # noqa: E402,F401  (imports Lava's multiprocessing first)
from models.ann import load_checkpoint, resnet, resnet_file  # noqa: E402
from snn2loihi.conversion import converter  # noqa: E402
from snn2loihi.data.fashion_mnist import load_fashion_mnist  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(depth: int, timesteps: int, args, data) -> dict:
    path = os.path.join(args.ann_dir, resnet_file(depth, 8, "qcfs", 8))
    ann = load_checkpoint(path)[0] if os.path.isfile(path) else resnet(depth, 8, activation="qcfs", levels=8).eval()
    calib = torch.tensor(data.x_train[:args.calib])
    options = {"rule": "tuned", "block": "restructured", "correct": True, "hold": timesteps}
    result, convert_counts = timed(lambda: converter.convert(ann, calib, timesteps, **options))
    on_counts = converter.held_counts
    converter.held_counts = lambda *a, **k: None  # every calibration batch through the stepped fallback
    try:
        _, convert_steps = timed(lambda: converter.convert(ann, calib, timesteps, **options))
    finally:
        converter.held_counts = on_counts
    x = data.x_test[:args.images]
    row = {"model": f"ResNet-{depth}", "trained": os.path.isfile(path), "timesteps": timesteps, "hold": timesteps,
           "images": len(x), "convert_seconds_counts": round(convert_counts, 2),
           "convert_seconds_steps": round(convert_steps, 2), "convert_ratio": round(convert_steps / convert_counts, 1)}
    for name, fixed in (("fixed_point", True), ("float", False)):
        fast, t_fast = timed(lambda: result.counts(x, fixed_point=fixed))
        slow, t_slow = timed(lambda: result.counts(x, fixed_point=fixed, collapse=False))
        row[name] = {"seconds_counts": round(t_fast, 3), "seconds_steps": round(t_slow, 2),
                     "ratio": round(t_slow / t_fast, 1), "differing_counts": int((fast != slow).sum()),
                     "counts": int(fast.size)}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", default="20,110")
    p.add_argument("--timesteps", default="16,32")
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--calib", type=int, default=32)
    p.add_argument("--ann-dir", default="runs/conv/ann")
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/held_counts.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist(args.data_dir)
    rows = []
    for depth in (int(d) for d in args.depths.split(",")):
        for t in (int(t) for t in args.timesteps.split(",")):
            row = measure(depth, t, args, data)
            rows.append(row)
            print(f"{row['model']} T=h={t}: convert {row['convert_seconds_steps']:.1f} s stepped / "
                  f"{row['convert_seconds_counts']:.1f} s on counts = {row['convert_ratio']}x; "
                  + "; ".join(f"{n} counts {row[n]['ratio']}x faster ({row[n]['differing_counts']} of "
                              f"{row[n]['counts']} differ)" for n in ("fixed_point", "float")), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"threads": args.threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
