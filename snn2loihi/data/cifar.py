"""CIFAR-10 / CIFAR-100 from the official "python version" batches (Krizhevsky 2009).

CIFAR-10: ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` in one folder; CIFAR-100:
``train`` and ``test``. Each is a pickled dict with ``data`` (N, 3072) uint8 (1024 red,
1024 green, 1024 blue values, rows of 32) and ``labels`` (CIFAR-10) or ``fine_labels`` /
``coarse_labels`` (CIFAR-100). The pickles are read with an unpickler that only builds
dicts, lists, strings, bytes and numpy arrays, so a file cannot run code.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Optional

import numpy as np

from ..errors import DataError
from .digits import Split

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: str, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """One batch file → images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise DataError(path, f"cannot read ({err.strerror})") from None
    stream = io.BytesIO(raw)
    try:
        batch = _SafeUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(path, f"truncated or corrupt pickle: {err} (reading stopped at byte {stream.tell()} "
                              f"of {len(raw)})") from None
    if not isinstance(batch, dict):
        raise DataError(path, f"expected a pickled dict, found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DataError(path, f"missing keys: found {sorted(batch)}, expected 'data' and {label_key!r}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(path, f"data {data.shape} and {label_key} {labels.shape} are not (N, 3072) and (N,)")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def load_cifar(data_dir: str, classes: int = 10, fine: bool = True, limit: Optional[int] = None) -> Split:
    """CIFAR-10 (``classes=10``) or CIFAR-100 (``classes=100``; ``fine`` or coarse labels),
    images float32 in [0, 1] shaped (N, 3, 32, 32)."""
    if classes == 10:
        train_files, test_files, key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"
    elif classes == 100:
        train_files, test_files, key = ["train"], ["test"], "fine_labels" if fine else "coarse_labels"
    else:
        raise ValueError(f"CIFAR has 10 or 100 classes, found {classes}")

    def load(files):
        parts = [read_batch(os.path.join(data_dir, f), key) for f in files]
        x = np.concatenate([p[0] for p in parts])[:limit]
        return x.astype(np.float32) / 255.0, np.concatenate([p[1] for p in parts])[:limit]

    (x_tr, y_tr), (x_te, y_te) = load(train_files), load(test_files)
    return Split(x_tr, y_tr, x_te, y_te, name=f"cifar{classes}")
