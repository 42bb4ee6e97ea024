"""Readers of real event-camera files: N-MNIST ``.bin`` and DVS-CIFAR10 ``.aedat``.

Both return the event array of :mod:`snn2loihi.data.events` (``t`` µs, ``x``, ``y``, ``p``
with 1 = ON). Malformed or truncated files raise :class:`~snn2loihi.errors.DataError`
naming the file and the byte offset.

- **N-MNIST** (Orchard et al. 2015), ATIS 34×34: 5 bytes per event, ``x`` (byte 0),
  ``y`` (byte 1), polarity = bit 7 of byte 2, time stamp = the remaining 23 bits, big
  endian: ``((b2 & 0x7F) << 16) | (b3 << 8) | b4``.
- **DVS-CIFAR10** (Li et al. 2017), DVS128 recorded with jAER (AEDAT 2.0): ASCII header
  lines starting with ``#``, then 8-byte records of two big-endian uint32, the address and
  the time stamp. DVS128 address: ``x_raw = (a >> 1) & 0x7F``, ``y = (a >> 8) & 0x7F``,
  bit 0 the polarity with 1 = OFF; jAER mirrors x, so ``x = 127 - x_raw`` and
  ``p = 1 - (a & 1)`` (as the SpikingJelly reader does).
"""
from __future__ import annotations


import numpy as np

from ..atomic import atomic_path
from ..errors import DataError
from .events import make_events

NMNIST_SIZE = 34
DVS128_SIZE = 128


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise DataError(path, f"cannot read ({err.strerror})") from None


def read_nmnist(path: str, size: int = NMNIST_SIZE) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file (5-byte ATIS records)."""
    raw = _read(path)
    whole = len(raw) - len(raw) % 5
    if whole != len(raw):
        raise DataError(path, f"truncated record at byte {whole}: {len(raw) - whole} of 5 bytes")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    bad = np.nonzero((rec[:, 0] >= size) | (rec[:, 1] >= size))[0]
    if len(bad):
        i = int(bad[0])
        raise DataError(path, f"event at byte {5 * i} has x={rec[i, 0]}, y={rec[i, 1]} outside the "
                              f"{size}×{size} sensor")
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    return make_events(t, rec[:, 0], rec[:, 1], rec[:, 2] >> 7)


def write_nmnist(path: str, events: np.ndarray) -> None:
    """Write events in N-MNIST's 5-byte format (x, y < 256, t < 2^23 µs), atomically."""
    t = events["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23 or events["x"].max() > 255 or events["y"].max() > 255):
        raise ValueError("N-MNIST records hold x, y < 256 and 0 <= t < 2^23 µs")
    rec = np.empty((len(t), 5), np.uint8)
    rec[:, 0], rec[:, 1] = events["x"], events["y"]
    rec[:, 2] = ((events["p"].astype(np.int64) & 1) << 7) | (t >> 16)
    rec[:, 3], rec[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(rec.tobytes())


def _aedat_header_end(raw: bytes) -> int:
    """Offset of the first data byte after the ``#`` header lines."""
    pos = 0
    while pos < len(raw) and raw[pos:pos + 1] == b"#":
        end = raw.find(b"\n", pos)
        if end < 0:
            return len(raw)
        pos = end + 1
    return pos


def read_dvs_cifar10(path: str) -> np.ndarray:
    """Events of one DVS-CIFAR10 ``.aedat`` file (AEDAT 2.0, DVS128 addresses)."""
    raw = _read(path)
    if not raw.startswith(b"#!AER-DAT"):
        raise DataError(path, f"not an AEDAT file: byte 0 starts {raw[:12]!r}, expected '#!AER-DAT'")
    start = _aedat_header_end(raw)
    size = len(raw) - start
    if size % 8:
        whole = start + size - size % 8
        raise DataError(path, f"truncated event record at byte {whole}: {size % 8} of 8 bytes")
    words = np.frombuffer(raw, ">u4", offset=start).astype(np.int64)
    address, t = words[0::2], words[1::2]
    return make_events(t, DVS128_SIZE - 1 - ((address >> 1) & 0x7F), (address >> 8) & 0x7F, 1 - (address & 1))
