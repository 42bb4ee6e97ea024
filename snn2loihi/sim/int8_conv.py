"""Exact integer convolution of binary spikes with 8-bit weights, on oneDNN's int8 kernels.

A Loihi conv or pool layer multiplies 0/1 spikes by integer weights on an 8-bit grid. On
x86 CPUs PyTorch ships oneDNN's quantized convolution (``torch.ops.onednn.qconv2d_pointwise``,
the kernel behind its x86 int8 inference): u8 activations × s8 weights, accumulated in
int32. With zero points 0, input scale 1 and weight scale 2^k, its float32 output is

    out = 2^k · Σ s · (W >> k)          (exact while |out| < 2^24)

where W = (W >> k) · 2^k and ``W >> k`` fits 8 signed bits (k is the smallest shift that
makes it fit; Loihi's 8-bit mantissas need k ≤ 1). The u8 × s8 pair sums that AVX2 (no
VNNI) accumulates in int16 cannot saturate for 0/1 inputs (|2 · 128| < 2^15), so only spike
inputs take this path.

It is 2–4× faster than the float32 convolution on the same spikes (``bench/speed.py``)
and reads a quarter of the bytes. Inputs and outputs are channels-last (N, C, H, W)
tensors. :func:`available` checks once per process that the kernel exists and reproduces
a float convolution exactly; ``SNN2LOIHI_INT8_CONV=0`` turns the path off.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

ENV = "SNN2LOIHI_INT8_CONV"
_checked: dict = {}


def weight_shift(weight: np.ndarray) -> Optional[int]:
    """Smallest k with every W divisible by 2^k and W >> k in [-128, 127]; None if no k."""
    w = np.asarray(weight, dtype=np.int64)
    for k in range(0, 24):
        if (w % (1 << k)).any():
            return None
        shifted = w >> k
        if shifted.min(initial=0) >= -128 and shifted.max(initial=0) <= 127:
            return k
    return None


class Int8Conv:
    """One conv (or depthwise pool) layer on spikes: ``__call__(s)`` → float32 sums.

    Args:
        weight: (C_out, C_in / groups, kH, kW) integers with :func:`weight_shift` not None.
        stride, padding, dilation, groups: as for ``F.conv2d``.
    """

    def __init__(self, weight: np.ndarray, stride, padding, dilation, groups: int):
        shift = weight_shift(weight)
        if shift is None:
            raise ValueError("weights do not fit 8 signed bits after a common power-of-two shift")
        w8 = torch.as_tensor(np.asarray(weight, dtype=np.int64) >> shift, dtype=torch.int8)
        out_channels = w8.shape[0]
        self.geometry = ([int(v) for v in stride], [int(v) for v in padding], [int(v) for v in dilation], int(groups))
        self.scales = torch.full((out_channels,), float(1 << shift), dtype=torch.float64)
        self.zero_points = torch.zeros(out_channels, dtype=torch.int64)
        self.packed = torch.ops.onednn.qconv_prepack(w8, self.scales, 1.0, 0, *self.geometry, None)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """Exact sums (N, C_out, H', W') float32, channels-last, for 0/1 spikes ``s``
        (N, C_in, H, W), uint8 or bool, preferably channels-last already (else copied)."""
        x = (s.view(torch.uint8) if s.dtype == torch.bool else s).contiguous(memory_format=torch.channels_last)
        stride, padding, dilation, groups = self.geometry
        return torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, self.packed, self.scales, self.zero_points, None,
                                                  stride, padding, dilation, groups, 1.0, 0, torch.float32,
                                                  "none", [], "")


def build(weight: np.ndarray, stride, padding, dilation, groups: int) -> Optional[Int8Conv]:
    """The :class:`Int8Conv` of a layer, or None where the path is off or not exact here, or
    the weights do not fit 8 signed bits after a power-of-two shift."""
    if not available() or weight_shift(weight) is None:
        return None
    return Int8Conv(weight, stride, padding, dilation, groups)


def available() -> bool:
    """Whether the int8 path is enabled and exact here: the kernel exists and a random conv
    (odd and even weights, stride, padding, groups) equals ``F.conv2d`` in float64."""
    if os.environ.get(ENV, "1") == "0":
        return False
    if "ok" not in _checked:
        _checked["ok"] = _self_check()
    return _checked["ok"]


def _self_check() -> bool:
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv_prepack")):
        return False
    generator = torch.Generator().manual_seed(0)
    s = (torch.rand(3, 4, 9, 9, generator=generator) < 0.5).to(torch.uint8)
    w = torch.randint(-128, 128, (6, 2, 3, 3), generator=generator) * 2
    try:
        out = Int8Conv(w.numpy(), (2, 1), (1, 0), (1, 1), 2)(s)
    except (RuntimeError, NotImplementedError):  # no int8 kernel for this CPU or build
        return False
    reference = F.conv2d(s.double(), w.double(), stride=(2, 1), padding=(1, 0), groups=2)
    return bool(out.shape == reference.shape and torch.equal(out.double(), reference))
