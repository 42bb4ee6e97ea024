"""Train the ANNs that bench/conversion.py converts: CIFAR-style ResNets on Fashion-MNIST.

Pure PyTorch (no Lava or slayer import), so it also runs on a GPU machine with another Python:

    python bench/train_ann.py --depths 20,56,110 --width 4 --epochs 15 --out bench/ann [--device cuda] \\
        [--activation qcfs --levels 8]

Writes ``OUT/resnet{depth}_w{width}_{relu|qcfs-L8}.pt`` (``models/ann.py`` checkpoints:
architecture + state dict, ``meta`` with the test accuracy, epochs and training time). The data are the official
Fashion-MNIST IDX files (``apt-get install -y dataset-fashion-mnist`` puts them in
/usr/share/datasets/fashion-mnist); they are read here with a small gzip-IDX reader instead
of :mod:`snn2loihi.data.fashion_mnist` because importing snn2loihi imports Lava.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from models.ann import count_layers, evaluate, resnet, resnet_file, save_checkpoint, train  # noqa: E402

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx_gz(path: str) -> np.ndarray:
    """A gzip-compressed uint8 IDX file (magic 0x0000 08 d, d big-endian uint32 sizes, data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not a uint8 IDX file")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir: str):
    """(x_train, y_train, x_test, y_test): images (N, 1, 28, 28) float32 in [0, 1], labels int64."""
    def part(stem):
        x = read_idx_gz(os.path.join(data_dir, f"{stem}-images-idx3-ubyte.gz"))
        y = read_idx_gz(os.path.join(data_dir, f"{stem}-labels-idx1-ubyte.gz"))
        return torch.tensor(x[:, None].astype(np.float32) / 255), torch.tensor(y.astype(np.int64))
    return (*part("train"), *part("t10k"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", default="20,56,110")
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--activation", default="relu", choices=("relu", "qcfs"),
                   help="qcfs: clip-floor-shift activation (converts at small T)")
    p.add_argument("--levels", type=int, default=8, help="L of the qcfs activation")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--train", type=int, default=0, help="training images (0: all 60000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--data-dir", default=DEFAULT_DIR)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="bench/ann")
    args = p.parse_args(argv)
    x_train, y_train, x_test, y_test = load(args.data_dir)
    if args.train:
        x_train, y_train = x_train[:args.train], y_train[:args.train]
    for depth in (int(d) for d in args.depths.split(",")):
        torch.manual_seed(0)
        arch = {"name": "resnet", "depth": depth, "width": args.width, "activation": args.activation,
                "levels": args.levels}
        model = resnet(**{k: v for k, v in arch.items() if k != "name"})
        start = time.time()
        train(model, x_train, y_train, args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
              log=lambda line: print(f"resnet{depth}: {line}", flush=True))
        seconds = time.time() - start
        acc = evaluate(model, x_test, y_test, device=args.device)
        print(f"resnet{depth} ({count_layers(model)} layers): test accuracy {acc:.4f} after {seconds:.0f} s",
              flush=True)
        save_checkpoint(os.path.join(args.out, resnet_file(depth, args.width, args.activation, args.levels)),
                        model.cpu(), arch,
                        {"test_accuracy": acc, "epochs": args.epochs, "train_images": len(x_train),
                         "train_seconds": seconds, "device": args.device})
    return 0


if __name__ == "__main__":
    sys.exit(main())
