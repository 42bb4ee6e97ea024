"""``snn2loihi train --recipe R.yaml [--out DIR] [--resume]``: run a training recipe.

Multi-process: ``torchrun --nproc_per_node=N -m snn2loihi.cli train --recipe R.yaml``.
"""
from __future__ import annotations

import argparse
import os


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML recipe (checkpoints every epoch, --resume)",
                       description="Train with a recipe (models/recipes/*.yaml): method, data, model, stages. "
                                   "Writes OUT/checkpoint.pt after every epoch and OUT/summary.json at the end; "
                                   "--resume continues from OUT/checkpoint.pt. Run under torchrun for "
                                   "multi-process (DDP) training.")
    p.add_argument("--recipe", required=True, help="YAML recipe")
    p.add_argument("--out", help="output folder (default: runs/<recipe name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", help="cpu or cuda (default: the recipe's, cpu)")
    p.add_argument("--data-dir", help="folder of the dataset files (overrides the recipe's data.data_dir)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.recipe import load_recipe
    from ..training.trainer import Trainer

    recipe = load_recipe(args.recipe)
    if args.data_dir:
        recipe["data"]["data_dir"] = args.data_dir
    out = args.out or os.path.join("runs", recipe["name"])
    trainer = Trainer(recipe, out, progress=not args.quiet, device=args.device)
    summary = trainer.run(resume=args.resume)
    if trainer.dist.main:
        print(f"{recipe['name']}: T={summary['timesteps']}, {summary['epochs']} epochs in "
              f"{summary['train_seconds']:.1f} s; test accuracy float {summary['accuracy_float']:.4f}, "
              f"fixed point (torch) {summary['accuracy_fixed_point_torch']:.4f} on {summary['test_samples']} "
              f"samples")
        print(f"wrote {os.path.join(out, 'checkpoint.pt')} and {os.path.join(out, 'summary.json')}")
    return 0
