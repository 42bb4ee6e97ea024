"""Clip-floor-shift activation: an ANN nonlinearity that an IF neuron reproduces at small T.

QCFS, Bu et al., "Optimal ANN-SNN Conversion for High-accuracy and Ultra-low-latency
Spiking Neural Networks", ICLR 2022 (their code: ``putshua/SNN_conversion_QCFS``)::

    h(z) = λ · clip( floor(z·L/λ + 1/2) / L , 0, 1 )

with L quantization levels and a trainable clip λ per layer (straight-through gradient of
the floor). A soft-reset IF neuron with threshold θ = λ and initial voltage u0 = θ/2,
driven by a constant current z for T = L steps, fires exactly ``clip(floor(z·T/θ + 1/2),
0, T)`` spikes: its rate × θ *is* h(z) (research notes §4.3, quantization error with
rounding). The ANN therefore trains with the SNN's quantization already in place, and the
converter takes θ = λ (the ``clip`` and ``tuned`` threshold rules,
:mod:`snn2loihi.conversion.thresholds`), which is how ReLU ANNs' large low-T conversion gap
(the max/percentile rules) is closed in the literature.

Shapes: any; λ is a scalar per module.
"""
from __future__ import annotations

import torch
from torch import nn


class _FloorSTE(torch.autograd.Function):
    """floor(x) forward, identity gradient backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def clip_floor_shift(z: torch.Tensor, clip: torch.Tensor | float, levels: int) -> torch.Tensor:
    """``λ · clip(floor(z·L/λ + 1/2)/L, 0, 1)`` (differentiable in z and λ through the STE)."""
    return torch.clamp(_FloorSTE.apply(z / clip * levels + 0.5) / levels, 0.0, 1.0) * clip


class ClipFloorShift(nn.Module):
    """The QCFS activation (module docstring) with L = ``levels`` and a trainable clip λ.

    Args:
        levels: L, the number of non-zero output levels (the T the ANN is tuned for; the
            paper uses 4–16).
        clip: initial λ (activation units; 8.0 as in the paper's code).
    """

    def __init__(self, levels: int = 8, clip: float = 8.0):
        super().__init__()
        if levels < 1 or not clip > 0:
            raise ValueError(f"ClipFloorShift needs levels >= 1 and clip > 0 (got {levels}, {clip})")
        self.levels = int(levels)
        self.clip = nn.Parameter(torch.tensor(float(clip)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return clip_floor_shift(z, self.clip, self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, clip={float(self.clip):.4g}"
