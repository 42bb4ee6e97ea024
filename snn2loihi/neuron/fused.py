"""The neuron's whole time loop as one autograd node, with a hand-written BPTT backward.

:meth:`snn2loihi.neuron.soft_lif.Neuron.forward` builds a dozen autograd nodes per time
step; this function runs the same forward arithmetic without recording a graph and saves
only the pre-reset voltage (and spike times for STDB). Its forward results are
bit-identical to the step-by-step reference (the same tensor operations in the same
order; tested), and its backward is the reference's gradient written out:

Forward, per step t (θ threshold, k_i = (4096 - iDecay)/4096, k_v likewise)::

    u_t  = D_i(u_{t-1}) + z_t
    p_t  = D_v(v_{t-1}) + u_t                 (pre-reset voltage; in fixed point clipped
                                               to ±(2^23 - 1)/S like Loihi's v register)
    s_t  = H(p_t - θ)
    v_t  = p_t - θ·s_t        (soft)   |   p_t·(1 - s_t)   (hard)

with ``D(x) = trunc(x·k·S)/S`` in fixed point (straight-through: ∂D/∂x = k) or ``x·k``.

Backward, from t = T-1 down to 0, with g_v = ∂L/∂v_t and g_u = ∂L/∂u_{t+1}·k_i carried::

    σ_t   = surrogate'(p_t - θ)
    g_s   = ∂L/∂s_t + g_v·∂v_t/∂s_t           ∂v_t/∂s_t = -θ (soft) | -p_t (hard) | 0 (detached)
    g_p   = g_v·∂v_t/∂p_t + g_s·σ_t            ∂v_t/∂p_t = 1 (soft) | 1 - s_t (hard)
    ∂L/∂z_t = g_p + g_u
    g_u  ← ∂L/∂z_t · k_i ;  g_v ← g_p · k_v

Two implementations of these loops, equal bit for bit (tested): PyTorch operations
(:func:`_forward_torch`, :func:`_backward_torch`; any device, no compiler) and, for CPU
tensors, the compiled one-pass loop of :mod:`snn2loihi.neuron.cpu_kernel`. Both work on
time-major (T, ...) memory. σ_t is evaluated for all steps at once before the recursion,
except where the surrogate has a :meth:`~snn2loihi.neuron.surrogate.Surrogate.kernel_form`
(triangle, rectangle, exponential): the compiled loop then evaluates it inside its pass,
with the same operations, so spikes and gradients stay bit for bit equal, except that the
exponential's float32 exp is the loop's own vectorized one (within 1 ulp of PyTorch's).
Spikes are returned in z's dtype; a neuron fired at t exactly where p_t > θ, so
the backward pass needs only p (the forward keeps it only when z requires a gradient).

Decays that require gradients are not handled here (the neuron falls back to the
reference loop).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import cpu_kernel
from .surrogate import Surrogate

#: Largest |v| of a 24-bit voltage register (Lava clips v to ±(2^23 - 1)).
VOLTAGE_LIMIT = (1 << 23) - 1


def _decay_factors(decay: torch.Tensor, unity: int, s_scale: Optional[int]) -> tuple:
    """(k, k·S, 1/S) for ``D(x) = trunc(x·k·S)/S``, k = (4096 - d)/4096.

    Multiplying by k·S equals the reference's ``x·(4096 - d)/4096·S`` bit for bit: the
    divisions and S are powers of two, which only shift the exponent of a float.
    """
    k = (unity - decay) / unity
    return k, (k * s_scale if s_scale is not None else k), (1.0 / s_scale if s_scale is not None else None)


def _decay(x: torch.Tensor, factors: tuple) -> torch.Tensor:
    _, k_scaled, inverse = factors
    if inverse is None:
        return x * k_scaled
    return torch.trunc(x * k_scaled).mul_(inverse)


def _forward_torch(z: torch.Tensor, v0: Optional[torch.Tensor], i_factors: tuple, v_factors: tuple, flush_u: bool,
                   v_limit: Optional[float], theta: float, soft: bool, initial_spike_time: Optional[float]):
    """The forward loop in PyTorch operations: (pre, spikes, dts or None), time-major (T, ...)."""
    steps, shape = z.shape[0], z.shape[1:]
    pre = torch.empty_like(z)
    spikes = torch.empty_like(z)
    dts = torch.empty_like(z) if initial_spike_time is not None else None
    last_spike = torch.full(shape, initial_spike_time, dtype=z.dtype, device=z.device) if dts is not None else None
    u = torch.zeros(shape, dtype=z.dtype, device=z.device)
    v = v0 if v0 is not None else torch.zeros_like(u)
    for t in range(steps):
        u = z[t] if flush_u else _decay(u, i_factors) + z[t]
        p = torch.add(_decay(v, v_factors), u, out=pre[t])
        if v_limit is not None:
            p.clamp_(-v_limit, v_limit)  # Loihi saturates v at 24 bits (straight-through)
        s = torch.gt(p, theta)  # == (p - θ > 0) exactly
        spikes[t] = s
        if dts is not None:
            dts[t] = t - last_spike
            last_spike = last_spike.masked_fill(s, float(t))
        v = torch.where(s, p - theta, p) if soft else p.masked_fill(s, 0.0)
    return pre, spikes, dts


def _backward_torch(grad_s: torch.Tensor, pre: torch.Tensor, sigma: torch.Tensor, k_i: float, k_v: float,
                    theta: float, soft: bool, detach_reset: bool) -> torch.Tensor:
    """The BPTT recursion in PyTorch operations, time-major (T, ...); a neuron fired at t
    exactly where ``pre[t] > θ`` (the forward's test)."""
    grad_z = torch.empty_like(pre)
    g_v = torch.zeros_like(pre[0])
    g_u = torch.zeros_like(pre[0])
    for t in range(pre.shape[0] - 1, -1, -1):
        g_s = grad_s[t] if detach_reset else grad_s[t] - g_v * (theta if soft else pre[t])
        g_p = g_s * sigma[t]
        g_p += g_v if soft else g_v.masked_fill(pre[t] > theta, 0.0)
        out = torch.add(g_p, g_u, out=grad_z[t])
        g_u = out * k_i
        g_v = g_p * k_v
    return grad_z


class _LifSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, v0: Optional[torch.Tensor], i_decay: torch.Tensor, v_decay: torch.Tensor,
                theta: float, soft: bool, detach_reset: bool, surrogate: Surrogate, unity: int,
                s_scale: Optional[int]) -> torch.Tensor:
        i_factors = _decay_factors(i_decay, unity, s_scale)
        v_factors = _decay_factors(v_decay, unity, s_scale)
        flush_u = bool(i_decay.item() == unity)  # D_i(u) = 0: u is this step's input
        v_limit = None if s_scale is None else VOLTAGE_LIMIT / s_scale
        spike_time = surrogate.initial_spike_time if surrogate.needs_spike_time else None
        steps = z.movedim(-1, 0).contiguous()  # a view for time-folded synapse outputs
        if v0 is not None:
            v0 = v0.to(z.dtype).expand(z.shape[:-1]).contiguous()
        kernel = cpu_kernel.compiled() if z.device.type == "cpu" else None
        if kernel is None:
            pre, spikes, dts = _forward_torch(steps, v0, i_factors, v_factors, flush_u, v_limit, theta, soft,
                                              spike_time)
        else:
            pre, spikes, dts = kernel.lif_forward(
                steps, steps.new_empty(0) if v0 is None else v0, flush_u, float(i_factors[1]), float(v_factors[1]),
                0.0 if s_scale is None else float(v_factors[2]), v_limit is not None,
                0.0 if v_limit is None else float(v_limit), float(theta), soft, ctx.needs_input_grad[0],
                spike_time is not None, 0.0 if spike_time is None else float(spike_time))
        ctx.save_for_backward(pre)
        ctx.dts = dts if spike_time is not None else None
        ctx.settings = (theta, soft, detach_reset, surrogate, float(i_factors[0]), float(v_factors[0]), kernel)
        return spikes.movedim(0, -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (pre,) = ctx.saved_tensors
        theta, soft, detach_reset, surrogate, k_i, k_v, kernel = ctx.settings
        grad_s = grad_out.movedim(-1, 0).contiguous()
        form = surrogate.kernel_form(theta) if kernel is not None else None
        if form is None:
            x = pre - theta
            sigma = (surrogate.derivative(x, theta, ctx.dts) if surrogate.needs_spike_time
                     else surrogate.derivative(x, theta)).contiguous()
        if kernel is None:
            grad_z = _backward_torch(grad_s, pre, sigma, k_i, k_v, theta, soft, detach_reset)
        else:
            kind, a, b = form if form is not None else (0, 1.0, 1.0)
            grad_z = kernel.lif_backward(grad_s, pre, sigma if form is None else pre.new_empty(0), kind, float(a),
                                         float(b), k_i, k_v, float(theta), soft, detach_reset)
        return grad_z.movedim(0, -1), None, None, None, None, None, None, None, None, None


def lif_sequence(z: torch.Tensor, v0: Optional[torch.Tensor], i_decay: torch.Tensor, v_decay: torch.Tensor,
                 theta: float, soft: bool, detach_reset: bool, surrogate: Surrogate, unity: int,
                 s_scale: Optional[int]) -> torch.Tensor:
    """Spikes (N, ..., T) of LIF neurons driven by ``z`` (N, ..., T), one autograd node.

    Args:
        z: weighted input spikes.
        v0: initial voltage (N, ...), or None for rest (0).
        i_decay, v_decay: decay tensors in 1/4096 units (already quantized in fixed point).
        theta: threshold; soft: subtractive reset; detach_reset: no gradient through reset.
        surrogate: spike pseudo-derivative (STDB's spike-time dependence supported).
        unity: 4096; s_scale: state scale for fixed-point rounding, None for float.
    """
    return _LifSequence.apply(z, v0, i_decay, v_decay, theta, soft, detach_reset, surrogate, unity, s_scale)
