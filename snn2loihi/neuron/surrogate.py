"""Surrogate gradients for the spike non-linearity ``s = H(x)``, ``x = v - θ``.

The forward pass is always the Heaviside step ``s = 1 if x > 0`` (strict, as on Loihi);
only the backward pass differs. A surrogate is a small object with a ``derivative(x)``
method returning ∂s/∂x elementwise; new ones (STDB's spike-time-dependent one needs the
time since the last spike) subclass :class:`Surrogate`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


class Surrogate:
    """Base class: ``derivative(x)`` gives the pseudo-derivative ∂s/∂x at ``x = v - θ``."""

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement derivative()")


@dataclass(frozen=True)
class Exponential(Surrogate):
    """slayer's default: ``∂s/∂x = scale · exp(-|x| / (tau · θ))``.

    Attributes:
        tau: width as a fraction of the threshold θ (slayer's ``tau_grad``).
        scale: peak value (slayer's ``scale_grad``).
    """

    tau: float = 1.0
    scale: float = 1.0

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        return self.scale * torch.exp(-x.abs() / (self.tau * threshold))


@dataclass(frozen=True)
class Rectangular(Surrogate):
    """STBP's rectangle: ``∂s/∂x = 1/a`` where ``|x| < a/2`` (Wu et al. 2018), else 0."""

    width: float = 1.0

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


@dataclass(frozen=True)
class Triangle(Surrogate):
    """TET's triangle: ``∂s/∂x = (1/γ²) · max(0, γ - |x|)`` (Deng et al. 2022), γ = 1."""

    gamma: float = 1.0

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        return torch.clamp(self.gamma - x.abs(), min=0) / self.gamma ** 2


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, threshold: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        ctx.threshold = threshold
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x, ctx.threshold), None, None


def spike(x: torch.Tensor, surrogate: Surrogate, threshold: float) -> torch.Tensor:
    """``H(x)`` with the gradient of ``surrogate``; x = v - θ, any shape."""
    return _SpikeFunction.apply(x, surrogate, threshold)
