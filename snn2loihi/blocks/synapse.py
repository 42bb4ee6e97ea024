"""slayer's synapses with the time axis folded into the batch: same parameters, same results,
2-D instead of 3-D convolutions.

slayer applies a time-invariant synapse as ``F.conv3d`` with a (kH, kW, 1) kernel over
(N, C, H, W, T). On a CPU, PyTorch's 3-D convolution backward is an order of magnitude
slower than the 2-D one (it was 74 % of a training step of the issue-6 workload). Since
the kernel has no extent in time, the same map is a 2-D convolution over the T·N images
of the batch::

    z[n, :, :, :, t] = W ⊛ s[n, :, :, :, t] + b        for every n, t

These subclasses of ``lava.lib.dl.slayer.synapse.layer`` keep slayer's parameters
(``weight`` of shape (out, in, kH, kW, 1), the ``pre_hook_fx`` quantizer, state-dict keys),
so checkpoints, ``isinstance`` checks and export are unchanged; only ``forward`` differs.

Memory layout: the folded batch is time-major, (T·N, C, H, W), and the result is returned
as a time-last *view* (N, C, H, W, T) of that time-major memory, so a neuron's per-step
slice ``z[..., t]`` is one contiguous block and the next synapse folds its input without a
copy. On spike inputs the results equal slayer's bit for bit (sums of weights on the 8-bit
grid are exact in float32, whatever the summation order); tested.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from lava.lib.dl.slayer.synapse import layer as slayer_synapse


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """(N, *S, T) → (T·N, *S), time-major (a view when ``x`` is already time-major)."""
    steps = x.shape[-1]
    return x.movedim(-1, 0).reshape((steps * x.shape[0],) + tuple(x.shape[1:-1]))


def unfold_time(y: torch.Tensor, steps: int) -> torch.Tensor:
    """(T·N, *S) → (N, *S, T): a view of the time-major memory of ``y``."""
    return y.reshape((steps, y.shape[0] // steps) + tuple(y.shape[1:])).movedim(0, -1)


def synaptic_current(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0),
                     dilation: Sequence[int] = (1, 1), groups: int = 1) -> torch.Tensor:
    """``W ⊛ x + b`` at every step, for slayer-shaped weights.

    Args:
        x: spikes (N, C, H, W, T), or (N, F, T) for a dense synapse.
        weight: (out, in, kH, kW, 1), slayer's layout (kH = kW = 1 for (N, F, T) input).
        bias: (out,) or None, added at every step.
        stride, padding, dilation: the spatial (first two) entries are used; slayer's third,
            temporal entry is (1, 0, 1) for every synapse and ignored.

    Returns:
        (N, out, H', W', T) or (N, out, T), a time-last view of time-major memory.
    """
    if weight.shape[-1] != 1:
        raise ValueError(f"synapse weight {tuple(weight.shape)} has a temporal kernel; only (out, in, kH, kW, 1)")
    steps = x.shape[-1]
    kernel = weight[..., 0]
    if x.dim() == 3:
        if kernel.shape[2:] != (1, 1):
            raise ValueError(f"dense input (N, F, T) needs a 1×1 kernel, found {tuple(weight.shape)}")
        return unfold_time(F.linear(fold_time(x), kernel[:, :, 0, 0], bias), steps)
    return unfold_time(F.conv2d(fold_time(x), kernel, bias, tuple(stride[:2]), tuple(padding[:2]),
                                tuple(dilation[:2]), groups), steps)


class _TimeFolded:
    """Mixin: ``forward`` through :func:`synaptic_current` with the hooked weight."""

    def hooked_weight(self) -> torch.Tensor:
        """The weight the synapse applies: ``pre_hook_fx(weight)`` (e.g. the 8-bit grid)."""
        return self.weight if self._pre_hook_fx is None else self._pre_hook_fx(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted input (N, out, H', W', T) or (N, out, T) for spikes ``x``."""
        return synaptic_current(x, self.hooked_weight(), self.bias, self.stride, self.padding, self.dilation,
                                self.groups)


class Dense(_TimeFolded, slayer_synapse.Dense):
    """slayer's ``synapse.Dense`` (``Dense(in_neurons, out_neurons, ...)``), time folded."""


class Conv(_TimeFolded, slayer_synapse.Conv):
    """slayer's ``synapse.Conv`` (``Conv(in_features, out_features, kernel_size, ...)``), time folded."""


def _sum_over(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Σ_i x.select(dim, i) as a new contiguous tensor (slices added in index order)."""
    parts = x.unbind(dim)
    total = parts[0] + parts[1] if len(parts) > 1 else parts[0].contiguous()
    for part in parts[2:]:
        total += part
    return total


class _TileSum(torch.autograd.Function):
    """Sums over non-overlapping kh×kw tiles of (B, C, H, W), kh | H and kw | W.

    Forward: the kh rows of each tile are added (contiguous rows), then the kw columns;
    backward: each tile's gradient repeated over its taps. ``avg_pool2d`` does the same
    sums but was 4× slower forward and 3× backward on the issue-6 workload here.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
        b, c, h, w = x.shape
        rows = _sum_over(x.view(b, c, h // kh, kh, w), 3)
        ctx.shape = (kh, kw)
        return _sum_over(rows.view(b, c, h // kh, w // kw, kw), 4)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kh, kw = ctx.shape
        return grad.repeat_interleave(kw, dim=3).repeat_interleave(kh, dim=2), None, None


def window_sum(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> torch.Tensor:
    """Sum of every kernel window of (B, C, H, W): non-overlapping unpadded tiles by
    :class:`_TileSum`, any other geometry by ``avg_pool2d`` with divisor 1. Exact on spikes."""
    kernel, stride, padding = tuple(kernel), tuple(stride), tuple(padding)
    if kernel == stride and padding == (0, 0) and x.shape[2] % kernel[0] == 0 and x.shape[3] % kernel[1] == 0:
        return _TileSum.apply(x, *kernel)
    return F.avg_pool2d(x, kernel, stride, padding, divisor_override=1)


class Pool(_TimeFolded, slayer_synapse.Pool):
    """slayer's ``synapse.Pool``: a sum pool with one weight per tap, applied per channel.

    As slayer, an odd-sized input is first padded at the bottom/right by ``H mod kH`` and
    ``W mod kW`` zero rows/columns. (slayer stacks channels on the height axis, so its own
    ``padding`` > 0 would pad only the stack's ends; here padding is per channel, as netx's
    pooling layer and the emulator have it.)

    With equal, fixed tap weights (slayer's pool: one value, no gradient) the pool is
    ``w · Σ_window s`` (:func:`window_sum` over the T·N images); a 1-channel convolution
    over T·N·C images gives the same numbers but its backward was 30× slower here. Other
    weights take the convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled input (N, C, H', W', T) for spikes ``x`` (N, C, H, W, T)."""
        n, channels, height, width, steps = x.shape
        weight = self.hooked_weight()
        kh, kw = weight.shape[2:4]
        if height % kh or width % kw:
            x = F.pad(x, (0, 0, 0, width % kw, 0, height % kh))
        if weight.requires_grad or bool((weight != weight.flatten()[0]).any()):
            per_channel = x.reshape((n * channels, 1) + tuple(x.shape[2:]))
            pooled = synaptic_current(per_channel, weight, self.bias, self.stride, self.padding, self.dilation)
            return pooled.reshape((n, channels) + tuple(pooled.shape[2:]))
        if tuple(self.dilation[:2]) != (1, 1):
            raise ValueError(f"pooling with dilation {tuple(self.dilation[:2])} is not supported")
        sums = window_sum(fold_time(x), (kh, kw), self.stride[:2], self.padding[:2])
        return unfold_time(sums * weight.flatten()[0], steps)
