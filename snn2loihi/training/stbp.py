"""STBP with NeuNorm (Wu, Deng, Li, Zhu, Xie, Shi, AAAI 2019).

- Neuron: the iterative LIF ``u[t+1] = k_τ·u[t]·(1 - o[t]) + W·o_prev[t+1]``, spike
  ``o = H(u - V_th)``: our :class:`~snn2loihi.neuron.soft_lif.Neuron` with ``reset="hard"``,
  ``current_decay = 1``, ``voltage_decay = 1 - k_τ`` (the reset spike is not detached, as in
  the official code), and the rectangular surrogate ``1/a`` on ``|u - V_th| < a/2``.
- Encoder: the first layer sees the analog image (:class:`~snn2loihi.training.modules.Encoder`).
- Output: a voting layer of M·C spiking neurons; ``ō = (1/T) Σ_t o[t]``, the fixed matrix V
  averages each class's group of M, and the loss is ``MSE(V·ō, one_hot(y))`` (mean over
  batch and classes, as ``torch.nn.MSELoss``).
- NeuNorm (:class:`NeuNorm`), per the recalled form of the paper (the precise equations
  could not be re-read; see ``shared/research/algorithms.md`` §2.4): an auxiliary neuron per
  spatial location integrates the channel-mean spikes, ``x[t] = k·x[t-1] + v·mean_c o[t]``
  with ``k + v = 1`` (a moving average of the local firing rate), and the next layer receives
  ``o[t] - U ⊙ x[t]`` with a learnable scale U per channel and location, initialised to 0
  (so training starts as plain STBP).

NeuNorm does not deploy: its output is an analog value per step, while a Loihi synapse in
this toolkit's feed-forward netx graph receives binary spikes, and the inhibitory term is a
second (exponentially filtered) synaptic path from the same layer, which the netx layer
chain cannot express. Export of a NeuNorm network raises
:class:`~snn2loihi.errors.QuantizationError`; it is trained and evaluated in torch (the
fixed-point-aware forward) only, as the ablation. Train with ``neunorm: false`` to deploy.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import QuantizationError


class NeuNorm(torch.nn.Module):
    """Neuron normalisation after a spiking layer: (N, C, H, W, T) or (N, F, T) → same shape.

    ``x[t] = k·x[t-1] + (1 - k)·mean_c o[t]`` (state per sample and location, x[-1] = 0),
    ``out[t] = o[t] - U ⊙ x[t]``. For dense layers (N, F, T) there is one auxiliary neuron
    (the mean over F) and U has one entry per neuron.

    Args:
        shape: (C, H, W) or (F,) of the layer it follows.
        decay: k_τ2 in [0, 1); v = 1 - k_τ2.
    """

    def __init__(self, shape: Sequence[int], decay: float = 0.5):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"NeuNorm decay must be within [0, 1), found {decay}")
        self.shape = tuple(int(s) for s in shape)
        self.decay = float(decay)
        self.scale = torch.nn.Parameter(torch.zeros(self.shape))

    def auxiliary(self, spikes: torch.Tensor) -> torch.Tensor:
        """The auxiliary neurons' states x, (N, 1, H, W, T) (or (N, 1, T))."""
        mean = spikes.mean(1, keepdim=True)
        x = torch.zeros_like(mean[..., 0])
        states = []
        for t in range(spikes.shape[-1]):
            x = self.decay * x + (1.0 - self.decay) * mean[..., t]
            states.append(x)
        return torch.stack(states, dim=-1)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return spikes - self.scale.unsqueeze(-1) * self.auxiliary(spikes)

    def spec(self) -> dict:
        return {"type": "NeuNorm", "shape": list(self.shape), "decay": self.decay}

    @classmethod
    def from_spec(cls, spec: dict) -> "NeuNorm":
        return cls(spec["shape"], spec["decay"])

    def deployable(self):
        raise QuantizationError("NeuNorm cannot be deployed: its output o - U·x is analog and its auxiliary "
                                "neuron is a second synaptic path, neither of which the netx layer chain of "
                                "binary spikes expresses; train with neunorm: false to export")


def voting_mse(spikes: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """STBP's voting loss: ``MSE((1/T)·V·Σ_t o[t], one_hot(y))``.

    Args:
        spikes: (N, C·M, T) output spikes, neurons c·M … c·M + M - 1 voting for class c.
        labels: (N,) class indices.
        num_classes: C.
    """
    rates = spikes.mean(-1)
    voted = rates.reshape(rates.shape[0], num_classes, -1).mean(-1)
    return F.mse_loss(voted, F.one_hot(labels, num_classes).to(voted.dtype))
