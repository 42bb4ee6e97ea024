"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): the full 60k/10k official split, from IDX files.

Debian ships it: ``apt-get install -y dataset-fashion-mnist`` (``make bench-data``) puts
``train-images-idx3-ubyte.gz`` … ``t10k-labels-idx1-ubyte.gz`` in
``/usr/share/datasets/fashion-mnist/``. Nothing is downloaded at run time; ``data_dir``
points elsewhere, and plain (un-gzipped) IDX files are read too.

IDX format (LeCun): bytes 0–1 zero, byte 2 the element type (0x08 = uint8), byte 3 the
number of dimensions d, then d big-endian uint32 sizes, then the data in C order.
"""
from __future__ import annotations

import gzip
import os
import zlib
from typing import Optional

import numpy as np

from ..errors import DataError
from .digits import Split

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array.

    Raises:
        DataError: missing file, bad magic, unknown type, or data that end before the
            header's sizes say (the message gives the byte offset in the decompressed data).
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise DataError(path, f"cannot read ({err.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DataError(path, f"truncated or corrupt gzip stream ({err})") from None
    if len(raw) < 4:
        raise DataError(path, f"truncated IDX header: {len(raw)} of 4 magic bytes at byte 0")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(path, f"not an IDX file: magic {raw[:4].hex()} at byte 0")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(path, f"truncated IDX header: it needs {header} bytes, the data end at byte {len(raw)}")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    needed = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) < needed:
        raise DataError(path, f"truncated IDX data: the header promises {needed} bytes of shape {shape}, "
                              f"the data end at byte {len(raw)}")
    return np.frombuffer(raw, dtype, count=int(np.prod(shape)), offset=header).reshape(shape)


def _find(data_dir: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise DataError(os.path.join(data_dir, stem + ".gz"),
                    "Fashion-MNIST not found; install it with `apt-get install -y dataset-fashion-mnist` "
                    "(or `make bench-data`), or pass --data-dir DIR holding the four IDX files")


def load_fashion_mnist(data_dir: Optional[str] = None) -> Split:
    """The official split: x (60000, 1, 28, 28) and (10000, 1, 28, 28) float32 in [0, 1], labels int64."""
    data_dir = data_dir or DEFAULT_DIR
    arrays = {}
    for part, (images, labels) in FILES.items():
        x = read_idx(_find(data_dir, images))
        y = read_idx(_find(data_dir, labels))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(os.path.join(data_dir, images), f"images {x.shape} and labels {y.shape} do not pair up")
        arrays[part] = ((x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64))
    return Split(arrays["train"][0], arrays["train"][1], arrays["test"][0], arrays["test"][1],
                 name="fashion-mnist-28x28")
