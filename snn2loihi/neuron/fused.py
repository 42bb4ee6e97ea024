"""The neuron's whole time loop as one autograd node, with a hand-written BPTT backward.

:meth:`snn2loihi.neuron.soft_lif.Neuron.forward` builds a dozen autograd nodes per time
step; this function runs the same forward arithmetic without recording a graph and saves
only the pre-reset voltage (and spike times for STDB). Its forward results are
bit-identical to the step-by-step reference (the same tensor operations in the same
order; tested), and its backward is the reference's gradient written out:

Forward, per step t (θ threshold, k_i = (4096 - iDecay)/4096, k_v likewise)::

    u_t  = D_i(u_{t-1}) + z_t
    p_t  = D_v(v_{t-1}) + u_t                 (pre-reset voltage)
    s_t  = H(p_t - θ)
    v_t  = p_t - θ·s_t        (soft)   |   p_t·(1 - s_t)   (hard)

with ``D(x) = trunc(x·k·S)/S`` in fixed point (straight-through: ∂D/∂x = k) or ``x·k``.

Backward, from t = T-1 down to 0, with g_v = ∂L/∂v_t and g_u = ∂L/∂u_{t+1}·k_i carried::

    σ_t   = surrogate'(p_t - θ)
    g_s   = ∂L/∂s_t + g_v·∂v_t/∂s_t           ∂v_t/∂s_t = -θ (soft) | -p_t (hard) | 0 (detached)
    g_p   = g_v·∂v_t/∂p_t + g_s·σ_t            ∂v_t/∂p_t = 1 (soft) | 1 - s_t (hard)
    ∂L/∂z_t = g_p + g_u
    g_u  ← ∂L/∂z_t · k_i ;  g_v ← g_p · k_v

Decays that require gradients are not handled here (the neuron falls back to the
reference loop).
"""
from __future__ import annotations

from typing import Optional

import torch

from .surrogate import Surrogate


def _decay(x: torch.Tensor, decay: torch.Tensor, unity: int, s_scale: Optional[int]) -> torch.Tensor:
    kept = x * (unity - decay) / unity
    if s_scale is None:
        return kept
    return torch.trunc(kept * s_scale) / s_scale


class _LifSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, v0: torch.Tensor, i_decay: torch.Tensor, v_decay: torch.Tensor,
                theta: float, soft: bool, detach_reset: bool, surrogate: Surrogate, unity: int,
                s_scale: Optional[int]) -> torch.Tensor:
        steps = z.shape[-1]
        u = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        v = v0
        flush_u = bool(i_decay.item() == unity) if s_scale is not None else False
        pre = torch.empty((steps,) + u.shape, dtype=z.dtype, device=z.device)
        out = torch.empty_like(pre)
        dts = torch.empty_like(pre) if surrogate.needs_spike_time else None
        last_spike = (torch.full_like(u, surrogate.initial_spike_time) if dts is not None else None)
        for t in range(steps):
            u = z[..., t] if flush_u else _decay(u, i_decay, unity, s_scale) + z[..., t]
            p = _decay(v, v_decay, unity, s_scale) + u
            s = ((p - theta) > 0).to(z.dtype)
            pre[t] = p
            out[t] = s
            if dts is not None:
                dts[t] = t - last_spike
                last_spike = last_spike.masked_fill(s > 0, float(t))
            v = p - theta * s if soft else p * (1 - s)
        ctx.save_for_backward(pre, out, i_decay, v_decay)
        ctx.dts = dts
        ctx.settings = (theta, soft, detach_reset, surrogate, unity)
        return out.movedim(0, -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        pre, out, i_decay, v_decay = ctx.saved_tensors
        theta, soft, detach_reset, surrogate, unity = ctx.settings
        k_i = (unity - i_decay) / unity
        k_v = (unity - v_decay) / unity
        grad_s = grad_out.movedim(-1, 0)
        grad_z = torch.empty_like(pre)
        g_v = torch.zeros_like(pre[0])
        g_u = torch.zeros_like(pre[0])
        for t in range(pre.shape[0] - 1, -1, -1):
            p, s = pre[t], out[t]
            x = p - theta
            sigma = (surrogate.derivative(x, theta, ctx.dts[t]) if surrogate.needs_spike_time
                     else surrogate.derivative(x, theta))
            if detach_reset:
                g_s = grad_s[t]
            else:
                g_s = grad_s[t] - g_v * (theta if soft else p)
            g_p = (g_v if soft else g_v * (1 - s)) + g_s * sigma
            grad_z[t] = g_p + g_u
            g_u = grad_z[t] * k_i
            g_v = g_p * k_v
        return grad_z.movedim(0, -1), None, None, None, None, None, None, None, None, None


def lif_sequence(z: torch.Tensor, v0: torch.Tensor, i_decay: torch.Tensor, v_decay: torch.Tensor,
                 theta: float, soft: bool, detach_reset: bool, surrogate: Surrogate, unity: int,
                 s_scale: Optional[int]) -> torch.Tensor:
    """Spikes (N, ..., T) of LIF neurons driven by ``z`` (N, ..., T), one autograd node.

    Args:
        z: weighted input spikes.
        v0: initial voltage (N, ...), zeros for rest.
        i_decay, v_decay: decay tensors in 1/4096 units (already quantized in fixed point).
        theta: threshold; soft: subtractive reset; detach_reset: no gradient through reset.
        surrogate: spike pseudo-derivative (STDB's spike-time dependence supported).
        unity: 4096; s_scale: state scale for fixed-point rounding, None for float.
    """
    return _LifSequence.apply(z, v0, i_decay, v_decay, theta, soft, detach_reset, surrogate, unity, s_scale)
