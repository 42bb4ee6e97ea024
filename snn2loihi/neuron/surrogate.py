"""Surrogate gradients for the spike non-linearity ``s = H(x)``, ``x = v - θ``.

The forward pass is always the Heaviside step ``s = 1 if x > 0`` (strict, as on Loihi);
only the backward pass differs. A surrogate is a small object with a
``derivative(x, threshold)`` method returning ∂s/∂x elementwise; new ones subclass
:class:`Surrogate`. A surrogate that also depends on spike timing (STDB) sets
``needs_spike_time = True``: the neuron then tracks each neuron's last spike step and
calls ``derivative(x, threshold, dt)`` with ``dt`` = steps since that spike; it also
defines ``initial_spike_time``, the last-spike step assumed before the first spike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

import torch


class Surrogate:
    """Base class: ``derivative(x, threshold)`` gives the pseudo-derivative ∂s/∂x at ``x = v - θ``."""

    #: True when ``derivative`` needs ``dt``, the steps since each neuron's last spike.
    needs_spike_time: ClassVar[bool] = False

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement derivative()")

    def kernel_form(self, threshold: float) -> Optional[Tuple[int, float, float]]:
        """``(kind, a, b)`` for surrogates the compiled neuron loop evaluates inside its
        backward pass with the same operations as :meth:`derivative` (``lif_kernel.cpp``):
        1 triangle (γ, γ²), 2 rectangle (width, width), 3 exponential (-(τ·θ), scale; its
        float32 exp within 1 ulp of PyTorch's); or None: ``derivative`` is evaluated in
        PyTorch. A subclass that changes ``derivative`` must override this too."""
        return None


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
        slope = torch.exp_(x.abs().div_(-(self.tau * threshold)))  # one new tensor, in-place passes
        return slope if self.scale == 1 else slope.mul_(self.scale)

    def kernel_form(self, threshold: float) -> Tuple[int, float, float]:
        return 3, -(self.tau * threshold), self.scale


@dataclass(frozen=True)
class Rectangular(Surrogate):
    """STBP's rectangle: ``∂s/∂x = 1/a`` where ``|x| < a/2`` (Wu et al. 2018), else 0."""

    width: float = 1.0

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        inside = (x.abs() < self.width / 2).to(x.dtype)
        return inside if self.width == 1 else inside.div_(self.width)

    def kernel_form(self, threshold: float) -> Tuple[int, float, float]:
        return 2, self.width, self.width


@dataclass(frozen=True)
class Triangle(Surrogate):
    """TET's triangle: ``∂s/∂x = (1/γ²) · max(0, γ - |x|)`` (Deng et al. 2022), γ = 1."""

    gamma: float = 1.0

    def derivative(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        slope = x.abs().neg_().add_(self.gamma).clamp_(min=0)
        return slope if self.gamma == 1 else slope.div_(self.gamma ** 2)

    def kernel_form(self, threshold: float) -> Tuple[int, float, float]:
        return 1, self.gamma, self.gamma ** 2


@dataclass(frozen=True)
class STDB(Surrogate):
    """Rathi et al. 2020's spike-time-dependent surrogate: ``∂s/∂v = (α/θ)·exp(-β·Δt)``.

    It ignores v entirely: a neuron that fired recently gets a large gradient, one that
    has been silent long a small one. (Rathi's code applies ``α·exp(-β·Δt)`` to
    ``z = v/θ - 1``, hence the 1/θ with respect to v.)

    Δt convention (the official code's, Δt ≥ 1): when the neuron tests its voltage at step
    t (0-based), ``Δt = t - t_last`` where ``t_last < t`` is the step of its most recent
    earlier spike; a neuron that spiked at the previous step has Δt = 1. Before its first
    spike ``t_last = initial_spike_time`` (Rathi's -1000), i.e. ``Δt = t + 1000``, which
    gives ``0.3·e^-10 ≈ 1.4e-5`` for the defaults. ``exp(-β·Δt)`` is evaluated directly,
    so it does not underflow to 0 as the code's ``exp(-Δt)^β`` does beyond Δt ≈ 100.

    Attributes:
        alpha: peak value α (at Δt = 0; 0.297 at Δt = 1 for the defaults).
        beta: decay β per step.
        initial_spike_time: ``t_last`` of a neuron that has not spiked yet.
    """

    alpha: float = 0.3
    beta: float = 0.01
    initial_spike_time: float = -1000.0
    needs_spike_time: ClassVar[bool] = True

    def derivative(self, x: torch.Tensor, threshold: float, dt: Optional[torch.Tensor] = None) -> torch.Tensor:
        if dt is None:
            raise ValueError("the STDB surrogate needs dt, the steps since each neuron's last spike")
        return (self.alpha / threshold) * torch.exp(-self.beta * dt.to(x.dtype))


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, threshold: float,
                dt: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        ctx.threshold = threshold
        ctx.dt = dt
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        if ctx.surrogate.needs_spike_time:
            derivative = ctx.surrogate.derivative(x, ctx.threshold, ctx.dt)
        else:
            derivative = ctx.surrogate.derivative(x, ctx.threshold)
        return grad * derivative, None, None, None


def spike(x: torch.Tensor, surrogate: Surrogate, threshold: float,
          dt: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``H(x)`` with the gradient of ``surrogate``; x = v - θ, any shape. ``dt`` (same
    shape as x): steps since each neuron's last spike, for surrogates that need it."""
    return _SpikeFunction.apply(x, surrogate, threshold, dt)
