"""Training-time layers that still deploy: host encoder, readout, batch norm folded into weights.

All three keep the rule of this toolkit: in fixed-point mode the torch forward is the chip's
arithmetic, so what is trained is what runs on Loihi.

- :class:`Encoder` (STBP's and TET's "first layer is the encoder"): the first conv (or dense)
  layer sees the analog image. A Loihi core only receives spikes, so the layer is split at
  the chip boundary: the host computes the synaptic current once per image and rounds it to
  the integers ``a = round(scale · (W ⊛ x + b))`` (16 bit), and the chip's input neurons
  receive ``a`` at every step (how stock netx input layers with a neuron work).
- :class:`Readout` (TET's and Rathi's non-spiking output): a dense layer whose forward is
  the synaptic current ``O(t) = W · s(t)`` (N, F, T). It deploys as netx's readout neuron (a
  current integrator that never fires), whose membrane at the end of the window holds
  ``Σ_t O(t)``: the class scores.
- :class:`BatchNormConv` / :class:`BatchNormDense` (TET, tdBN): batch norm on the synaptic
  current with statistics over batch, space **and time**, folded into the weights and a bias
  current: ``W' = W·γ/σ``, ``b' = β - γ·μ/σ``. Training normalises with the batch's μ, σ;
  evaluation and export use the running ones, folded and on the chip's grids.

Shapes: images (N, C, H, W) or (N, F); spikes and currents (N, C, H, W, T) or (N, F, T).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir
from ..blocks.soft_lif import Conv, Dense
from ..blocks.synapse import synaptic_current
from ..errors import QuantizationError
from ..neuron.soft_lif import Neuron, _ste

#: Input neurons receive 16-bit integers per step (the Lava input port).
INPUT_LIMIT = (1 << 15) - 1
#: Bias mantissas are 13-bit signed.
BIAS_LIMIT = 4095


def readout_params(scale: int = 1 << 6) -> dict:
    """Neuron parameters of netx's readout: a non-leaky current integrator that never fires
    (iDecay 0, vDecay 4096, vThMant 2^17, hard reset); equals :data:`snn2loihi.ir.READOUT_NEURON`."""
    return {"threshold": ir.VTH_MAX / scale, "current_decay": 0.0, "voltage_decay": 1.0, "reset": "hard",
            "scale": scale}


def _round_to_grid(x: torch.Tensor, scale: int, limit: int) -> torch.Tensor:
    """``clamp(round(x·scale), ±limit) / scale`` with a straight-through gradient."""
    return _ste(x, torch.clamp(torch.round(x * scale), -limit, limit)) / scale


class Encoder(torch.nn.Module):
    """Analog input → host synapse (conv or dense, optional batch norm) → chip input neurons.

    Per image (host, float)::  z = W ⊛ x + b          (BN folded in when present)
                               a = clamp(round(z · scale), ±32767)      integer currents
    Per step t < T (chip)::    the input neuron integrates a (slayer units a / scale)

    Args:
        neuron_params: keyword arguments of :class:`~snn2loihi.neuron.soft_lif.Neuron`.
        in_shape: (C, H, W) for a conv encoder, (F,) for a dense one.
        out_features: output channels (conv) or neurons (dense).
        kernel_size, stride, padding: conv geometry (ignored for dense).
        batchnorm: normalise the current over the batch (it is constant over time).
    """

    def __init__(self, neuron_params: dict, in_shape: Sequence[int], out_features: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, batchnorm: bool = False):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.neuron_params = dict(neuron_params)
        self.batchnorm = batchnorm
        if len(self.in_shape) == 3:
            self.synapse = torch.nn.Conv2d(self.in_shape[0], out_features, kernel_size, stride, padding,
                                           bias=not batchnorm)
            self.norm = torch.nn.BatchNorm2d(out_features) if batchnorm else None
        elif len(self.in_shape) == 1:
            self.synapse = torch.nn.Linear(self.in_shape[0], out_features, bias=not batchnorm)
            self.norm = torch.nn.BatchNorm1d(out_features) if batchnorm else None
        else:
            raise ValueError(f"encoder input shape must be (C, H, W) or (F,), found {self.in_shape}")
        self.neuron = Neuron(**neuron_params)
        with torch.no_grad():
            self.out_shape = tuple(self.current(torch.zeros((2,) + self.in_shape)).shape[1:])

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """Synaptic current (N, *out_shape) for analog x (N, *in_shape), on the chip's input
        grid (1/scale steps, 16-bit) in fixed-point mode."""
        z = self.synapse(x)
        if self.norm is not None:
            z = self.norm(z)
        if self.neuron.fixed_point:
            z = _round_to_grid(z, self.neuron.w_scale, INPUT_LIMIT)
        return z

    def forward(self, x: torch.Tensor, timesteps: int, pad: int = 0) -> torch.Tensor:
        """Spikes (N, *out_shape, T + pad) of the input neurons for images x (N, *in_shape):
        the current for T steps, then ``pad`` steps without input (as :meth:`chip_input`)."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"encoder input shape {tuple(x.shape[1:])} differs from {self.in_shape}")
        z = self.current(x).unsqueeze(-1)
        steps = z.expand(*z.shape[:-1], timesteps)
        return self.neuron(F.pad(steps, (0, pad)) if pad else steps)

    @torch.no_grad()
    def chip_input(self, x: torch.Tensor) -> np.ndarray:
        """The integers a (N, *out_shape) the chip's input neurons receive each step."""
        return torch.round(self.current(x) * self.neuron.w_scale).to(torch.int64).cpu().numpy()

    def input_layer(self) -> ir.InputLayer:
        """The netx input layer: the encoder's neurons, driven by :meth:`chip_input`."""
        from ..quantize import LayerQuantization, _neuron_spec

        return ir.InputLayer(self.out_shape, neuron=_neuron_spec(self.neuron, LayerQuantization("encoder")))


class Readout(Dense):
    """Non-spiking dense output: ``forward`` returns the current O(t) = W·s(t), (N, F, T).

    The weights are on the neuron's 8-bit grid (fixed point). Deployed, the layer is netx's
    readout neuron, whose membrane after the window is Σ_t O(t) (the class scores).
    ``Readout(in_neurons, out_neurons, weight_scale=1, scale=64)``.
    """

    def __init__(self, in_neurons: int, out_neurons: int, weight_scale: float = 1, scale: int = 1 << 6):
        super().__init__(readout_params(scale), in_neurons, out_neurons, weight_scale=weight_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.synapse(x)


class _BatchNormFolded:
    """Mixin for Conv/Dense: batch norm over (N, H, W, T) of the synaptic current, folded.

    Training mode normalises ``W ⊛ s`` with the batch's statistics in float (one conv; the
    running statistics are updated). Evaluation uses the folded layer the chip runs:
    ``z = (W·γ/σ) ⊛ s + (β - γμ/σ)`` with running μ, σ, and in fixed-point mode the folded
    weight on the 8-bit grid and the bias on the 13-bit mantissa grid, so evaluation equals
    the deployed layer exactly. (The folded weights' rounding is therefore not seen during
    training; the fixed-point accuracy measures what it costs.)
    """

    def _init_norm(self, eps: float, momentum: float) -> None:
        if self.neuron.cx_current_decay != ir.DECAY_UNITY:
            raise ValueError("batch norm deploys as a bias current, which needs current_decay = 1")
        self.norm = torch.nn.BatchNorm1d(self.synapse.out_channels, eps=eps, momentum=momentum)

    def folded(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) with the normalisation folded in, in slayer units, unquantized."""
        gain = self.norm.weight / torch.sqrt(var + self.norm.eps)
        weight = self.synapse.weight * gain.reshape((-1,) + (1,) * (self.synapse.weight.dim() - 1))
        return weight, self.norm.bias - mean * gain

    def _current(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The block's synapse applied with an explicit ``weight`` and ``bias``."""
        syn = self.synapse
        return synaptic_current(x, weight, bias, syn.stride, syn.padding, syn.dilation, syn.groups)

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised synaptic current (before the neuron), same layout as the output."""
        if self.training:
            raw = self._current(x, self.synapse.weight, None)
            dims = [d for d in range(raw.dim()) if d != 1]
            mean, var = raw.mean(dims), raw.var(dims, unbiased=False)
            with torch.no_grad():
                n = raw.numel() // raw.shape[1]
                m = self.norm.momentum
                self.norm.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.norm.running_var.mul_(1 - m).add_(m * var.detach() * n / max(n - 1, 1))
                self.norm.num_batches_tracked += 1
            gain = self.norm.weight / torch.sqrt(var + self.norm.eps)
            view = (1, -1) + (1,) * (raw.dim() - 2)
            return raw * gain.reshape(view) + (self.norm.bias - mean * gain).reshape(view)
        weight, bias = self.folded(self.norm.running_mean, self.norm.running_var)
        if self.neuron.fixed_point:
            weight, bias = self.neuron.quantize_8bit(weight), _round_to_grid(bias, self.neuron.w_scale, BIAS_LIMIT)
        return self._current(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.current(x))

    @torch.no_grad()
    def deployable(self):
        """The plain block with folded running statistics and a bias (what the chip runs)."""
        from .spec import block_from_spec, block_spec

        spec = block_spec(self)
        spec["type"] = spec["type"].replace("BatchNorm", "")
        spec.pop("eps"), spec.pop("momentum")
        plain = block_from_spec(spec).to(self.synapse.weight)
        weight, bias = self.folded(self.norm.running_mean, self.norm.running_var)
        scale = self.neuron.w_scale
        if torch.abs(torch.round(bias * scale)).max() > BIAS_LIMIT:
            raise QuantizationError(f"{type(self).__name__}: folded bias exceeds the 13-bit mantissa range")
        plain.synapse.weight.copy_(weight)
        plain.synapse.bias = torch.nn.Parameter(torch.round(bias * scale) / scale, requires_grad=False)
        plain.neuron = self.neuron
        plain.snn2loihi_in_shape = getattr(self, "snn2loihi_in_shape", None)
        return plain


class BatchNormConv(_BatchNormFolded, Conv):
    """Conv + tdBN + LIF: ``BatchNormConv(neuron_params, in, out, kernel, stride=1, padding=0,
    dilation=1, groups=1, eps=1e-5, momentum=0.1)``."""

    def __init__(self, *args, eps: float = 1e-5, momentum: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_norm(eps, momentum)


class BatchNormDense(_BatchNormFolded, Dense):
    """Dense + tdBN + LIF: ``BatchNormDense(neuron_params, in, out, eps=1e-5, momentum=0.1)``."""

    def __init__(self, *args, eps: float = 1e-5, momentum: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_norm(eps, momentum)

