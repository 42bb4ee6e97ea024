"""The integer synapse arithmetic of Lava's fixed-point Dense and Conv processes.

What a synapse layer delivers to its neurons at step t+1 for the spikes s(t) it received
at step t (Lava's one-step synaptic buffer is applied by the caller):

- dense: ``a = (W' · s) >> -e`` (or ``<< e``), where netx first rescales the stored
  weights W to W' = W << -e with ``optimize_weight_bits`` and Lava's Dense then clips and
  truncates W' to its weight bits; the shift is an arithmetic (flooring) shift; a skip's
  own exponent x adds to e (one shift by e + x, exact since x ≥ 0);
- conv: ``a = wrap24(conv(s, W << x))``: netx passes conv weights unscaled, Lava's fixed
  point Conv has no exponent (a skip's x is applied to its weights) and wraps its output
  to 24 signed bits;
- pool: a depthwise conv (groups = C) with the pool weight, as our Lava loader builds it.

Every sum is computed exactly: in float32 where it is provably below 2^24, else float64
(exact below 2^53), and on CPUs with oneDNN's int8 convolution (x86: VNNI or AVX2) conv and
pool layers on binary spikes run as u8 × s8 → s32 convolutions when their weights fit 8
signed bits after removing a common power of two (Loihi's 8-bit weights always do). The
int32 sums are exact, and the float32 they are returned in holds them exactly (< 2^24).
Shapes: s is (B, *in_shape), the result (B, *out_shape); conv inputs and outputs may be
channels-last in memory (the emulator keeps (C, H, W) populations as (H, W, C)).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..ir import ConvLayer, DenseLayer, PoolLayer, STATE_BITS
from . import int8_conv


@dataclass(frozen=True)
class DenseWeights:
    """Dense weights in the form both backends use.

    Attributes:
        lava_weight: (out, in) the matrix handed to Lava's Dense (after netx's rescale).
        num_weight_bits: weight bits handed to Lava's Dense.
        weight_exp: shared exponent e; the accumulated sum is shifted by e.
        effective: (out, in) the matrix Lava's Dense multiplies with after its own clip
            and truncation.
    """

    lava_weight: np.ndarray
    num_weight_bits: int
    weight_exp: int
    effective: np.ndarray


def dense_weights(weight: np.ndarray) -> DenseWeights:
    """Apply netx's ``optimize_weight_bits`` and Lava Dense's clip + truncation to ``weight``."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights
    from ..lava_imports import quiet_import

    optimize_weight_bits = quiet_import("lava.lib.dl.netx.utils").optimize_weight_bits  # lava.lib.dl prints on import

    weight = np.asarray(weight, dtype=np.int64)
    if not weight.any():  # netx divides by max |W| (and stock netx fails); zeros are exact at any exponent
        return DenseWeights(weight, 8, 0, weight.copy())
    with contextlib.redirect_stdout(io.StringIO()):
        w, bits, exp, _ = optimize_weight_bits(weight)
    sign_mode = determine_sign_mode(w)
    eff = truncate_weights(clip_weights(w, sign_mode, num_bits=8), sign_mode, bits)
    return DenseWeights(w, int(bits), int(exp), np.asarray(eff, dtype=np.int64))


def delivered_weights(layer: ConvLayer) -> np.ndarray:
    """The integer conv weights Lava's CPU Conv multiplies with: ``weight << weight_exp``
    (its fixed-point model takes no exponent, so a skip's exponent is applied to the weights;
    on the chip the mantissa and exponent are loaded as they are)."""
    return np.asarray(layer.weight, dtype=np.int64) << layer.weight_exp


def wrap_signed(x: torch.Tensor, bits: int = STATE_BITS) -> torch.Tensor:
    """``(x + 2^(b-1)) mod 2^b - 2^(b-1)``: Lava's ``signed_clamp`` (a wrap, not a clip)."""
    base = 1 << bits
    return torch.remainder(x + base // 2, base) - base // 2


class Synapse:
    """Batched integer synapse of one layer; ``__call__`` maps (B, *in) → (B, *out) int64.

    Args:
        layer: a dense, conv or pool layer.
        device: where the sums are computed.
        source_hwc: for a dense layer whose input is a (C, H, W) population delivered
            flattened in (H, W, C) order (the emulator's channels-last layout), that shape:
            the weight columns, stored in (C, H, W) order, are permuted to match.
    """

    def __init__(self, layer, device: torch.device, source_hwc: Optional[tuple] = None):
        self.layer = layer
        self.device = device
        self.exp = 0
        #: The exact u8 × s8 convolution for spike inputs, where available (else None).
        self.int8 = None
        if isinstance(layer, DenseLayer):
            dw = dense_weights(layer.weight)
            self.exp = dw.weight_exp + layer.weight_exp  # Lava's Dense shifts once by the sum
            effective = dw.effective
            if source_hwc is not None:
                effective = effective.reshape((-1,) + tuple(source_hwc)).transpose(0, 2, 3, 1).reshape(len(effective), -1)
            self.weight = torch.as_tensor(effective, dtype=torch.float64, device=device)
        elif isinstance(layer, ConvLayer):
            self.weight = torch.as_tensor(delivered_weights(layer), dtype=torch.float64, device=device)
        elif isinstance(layer, PoolLayer):
            c = layer.in_shape[0]
            w = np.broadcast_to(layer.weight, (c, 1) + layer.weight.shape)
            self.weight = torch.as_tensor(np.ascontiguousarray(w), dtype=torch.float64, device=device)
        else:
            raise TypeError(f"no synapse for {type(layer).__name__}")
        #: (stride, padding, dilation, groups) of a conv or pool (a depthwise conv); None for dense.
        self.geometry = None
        if not isinstance(layer, DenseLayer):
            groups = layer.groups if isinstance(layer, ConvLayer) else layer.in_shape[0]
            self.geometry = (layer.stride, layer.padding, layer.dilation, groups)
            if self.device.type == "cpu":
                self.int8 = int8_conv.build(self.weight.numpy().astype(np.int64), *self.geometry)
        #: Largest Σ|W| into one neuron: with binary spikes, the largest |sum| before the shift.
        self.max_abs_sum = int(self.weight.abs().reshape(self.weight.shape[0], -1).sum(1).max())
        self._weight32 = self.weight.to(torch.float32)
        #: The one tap weight of an undilated pool whose taps are all equal (else None).
        self.pool_weight = None
        if isinstance(layer, PoolLayer) and (layer.weight == layer.weight.flat[0]).all() and \
                tuple(layer.dilation) == (1, 1):
            self.pool_weight = int(layer.weight.flat[0])

    def max_abs_input(self, input_magnitude: int = 1) -> int:
        """Bound on |a| this synapse can deliver for inputs of magnitude ≤ ``input_magnitude``."""
        bound = self.max_abs_sum * input_magnitude
        if isinstance(self.layer, DenseLayer):
            return bound << self.exp if self.exp >= 0 else -((-bound) >> -self.exp)
        return min(bound, 1 << (STATE_BITS - 1))

    def __call__(self, s: torch.Tensor, dtype: Optional[torch.dtype] = torch.int64, size: Optional[int] = None
                 ) -> tuple[torch.Tensor, int]:
        """Synaptic input for spikes ``s`` as ``dtype`` integers (None: as the exact float sums
        where no shift or wrap applies); also returns how many conv/pool outputs wrapped.
        ``size`` bounds max |s| (measured when not given).

        Sums are computed in float32 when they are provably below 2^24, else float64. Either
        way they are exact without rounding: every partial sum of integer products is an
        integer below the bound, whatever order the matmul or direct convolution adds them
        in. A pool whose taps share one weight w is ``w · Σ_window s`` (a divisor-1
        ``avg_pool2d``, also exact), otherwise a depthwise convolution. Conv and pool
        layers given uint8/bool spikes (``size`` ≤ 1) take the exact int8 convolution
        (:mod:`snn2loihi.sim.int8_conv`) where it is available.
        """
        size = magnitude(s) if size is None else size
        exact32 = self.max_abs_sum * size < 1 << 24
        weight = self._weight32 if exact32 else self.weight
        layer = self.layer
        if self.int8 is not None and exact32 and size <= 1 and s.dtype in (torch.uint8, torch.bool):
            acc = self.int8(s)
            return self._conv_output(acc, dtype, size)
        x = s.to(weight.dtype)
        if isinstance(layer, DenseLayer):
            acc = x.reshape(x.shape[0], -1) @ weight.T
            if self.exp:
                acc = acc.to(torch.int64)
                acc = acc << self.exp if self.exp > 0 else acc >> -self.exp
            return _cast(acc, dtype), 0
        if self.pool_weight is not None:
            acc = F.avg_pool2d(x, tuple(layer.weight.shape), layer.stride, layer.padding,
                               divisor_override=1).mul_(self.pool_weight)
        else:
            stride, padding, dilation, groups = self.geometry
            acc = F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return self._conv_output(acc, dtype, size)

    def _conv_output(self, acc: torch.Tensor, dtype: Optional[torch.dtype], size: int) -> tuple[torch.Tensor, int]:
        """Exact conv/pool sums → Lava Conv's 24-bit wrapped output, and the wrap count."""
        if self.max_abs_sum * size < 1 << (STATE_BITS - 1):
            return _cast(acc, dtype), 0
        acc = acc.to(torch.int64)
        wrapped = wrap_signed(acc)
        return _cast(wrapped, dtype), int((wrapped != acc).sum())


def _cast(x: torch.Tensor, dtype: Optional[torch.dtype]) -> torch.Tensor:
    return x if dtype is None else x.to(dtype)


def magnitude(s: torch.Tensor) -> int:
    """max |s| (a bound for spikes: 1 for any non-empty bool tensor, without a pass over
    it), the largest |value| for graded input."""
    if s.numel() == 0:
        return 0
    if s.dtype == torch.bool:
        return 1
    return int(s.abs().max())


def shift_one_step(a: torch.Tensor) -> torch.Tensor:
    """Lava's synaptic buffer: what arrives at step t was computed at step t-1. (..., T)."""
    out = torch.zeros_like(a)
    out[..., 1:] = a[..., :-1]
    return out


def bias_tensor(layer, device: torch.device) -> Optional[torch.Tensor]:
    """Bias mantissas, one per channel (conv) or neuron (dense): broadcastable to a
    channels-last (B, H, W, C) or to (B, F); None without a bias."""
    bias = getattr(layer, "bias", None)
    if bias is None:
        return None
    return torch.as_tensor(bias, dtype=torch.int64, device=device)
