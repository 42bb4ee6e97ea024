"""Spiking residual block (ResNet BasicBlock, TET's ResNet-19 / Rathi's ResNet variant).

``s_out = LIF( BN(W2 ⊛ LIF(BN(W1 ⊛ s))) + shortcut(s) )`` with the LIF **after** the addition:
the post-addition neuron integrates the branch current plus the shortcut current, which is
the identity (each input spike adds 1, slayer units) or a 1×1 conv with BN when the shape
changes. Shapes (N, C, H, W, T) → (N, C_out, H/stride, W/stride, T).

The two BN convs whose current feeds the addition (``conv2``, ``shortcut``) keep a neuron
object only for its weight grid (``scale``); the block's own ``neuron`` fires.

It does not export (see :meth:`Residual.deployable`): converted ResNets
(:mod:`snn2loihi.conversion`) are the deployable residual networks of this toolkit.
"""
from __future__ import annotations

import torch

from ..errors import QuantizationError
from ..neuron.soft_lif import Neuron
from .modules import BatchNormConv


class Residual(torch.nn.Module):
    """``Residual(neuron_params, in_channels, out_channels, stride=1)``; neuron_params are the
    plain kwargs of :class:`~snn2loihi.neuron.soft_lif.Neuron` (surrogate/dropout built)."""

    def __init__(self, neuron_params: dict, in_channels: int, out_channels: int, stride: int = 1,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = int(in_channels), int(out_channels), int(stride)
        norm = {"eps": eps, "momentum": momentum}
        self.conv1 = BatchNormConv(neuron_params, in_channels, out_channels, 3, stride=stride, padding=1, **norm)
        self.conv2 = BatchNormConv(neuron_params, out_channels, out_channels, 3, padding=1, **norm)
        self.shortcut = (BatchNormConv(neuron_params, in_channels, out_channels, 1, stride=stride, **norm)
                         if stride != 1 or in_channels != out_channels else None)
        self.neuron = Neuron(**neuron_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv2.current(self.conv1(x))
        z = z + (x if self.shortcut is None else self.shortcut.current(x))
        return self.neuron(z)

    def spec(self) -> dict:
        from .spec import neuron_spec

        return {"type": "Residual", "neuron": neuron_spec(self.neuron), "in": self.in_channels,
                "out": self.out_channels, "stride": self.stride, "eps": float(self.conv1.norm.eps),
                "momentum": float(self.conv1.norm.momentum)}

    @classmethod
    def from_spec(cls, spec: dict) -> "Residual":
        from .spec import neuron_kwargs

        return cls(neuron_kwargs(spec["neuron"]), spec["in"], spec["out"], spec["stride"], spec["eps"],
                   spec["momentum"])

    def deployable(self):
        raise QuantizationError("Residual: this block does not export. The netx residual layer (ir.Skip) takes "
                                "soft-reset neurons only and delivers the shortcut one step before the branch, "
                                "while this block (TET: hard reset) sums both in the same step; a spiking ResNet "
                                "trains and evaluates in torch only")
