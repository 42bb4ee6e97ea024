"""``snn2loihi demo``: the end-to-end pipeline on scikit-learn's digits."""
from __future__ import annotations

import argparse
import os

from ..errors import InputError


def register(sub) -> None:
    p = sub.add_parser("demo", help="train, quantize, export, simulate (emulator + Lava CPU) and account",
                       description="Train a conv soft-reset LIF SNN on scikit-learn's handwritten digits, "
                                   "export DIR/model.net, evaluate it with the emulator and on Lava CPU, "
                                   "write DIR/report.json and DIR/report.png.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--timesteps", type=int, default=16, help="rate-coding window T (default 16)")
    p.add_argument("--lava-samples", type=int, default=100, help="test samples run on Lava CPU (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoConfig, run_demo

    for name in ("epochs", "timesteps", "lava_samples"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    report = run_demo(args.out, DemoConfig(timesteps=args.timesteps, epochs=args.epochs,
                                           lava_samples=args.lava_samples, seed=args.seed))
    acc = report["accuracy"]
    print(f"\naccuracy: float {acc['float']:.4f} | fixed point (emulator, {acc['test_samples']} samples) "
          f"{acc['fixed_point']:.4f} | Lava CPU ({acc['lava_samples']} samples) {acc['lava']:.4f}")
    print(f"Lava vs emulator mismatched spikes: {report['lava_vs_emulator']['mismatched_spikes']}")
    print(f"wrote {os.path.join(args.out, 'model.net')}, report.json, report.png")
    return 0
