"""TET: temporal efficient training (Deng, Li, Zhang, Gu, ICLR 2022), and the SDT baseline.

The output layer is a :class:`~snn2loihi.training.modules.Readout`: no LIF, its per-step
output is the current ``O(t) = W·s(t)``; inference uses ``(1/T) Σ_t O(t)``.

- SDT (standard direct training): ``L_SDT = CE((1/T) Σ_t O(t), y)``.
- TET: ``L_TET = (1/T) Σ_t CE(O(t), y)`` (Eq. 9), regularised towards the constant φ:
  ``L_MSE = (1/T) Σ_t MSE(O(t), φ)`` (Eq. 12) and
  ``L_TOTAL = (1 - λ)·L_TET + λ·L_MSE`` (Eq. 13), φ = V_th = 1. CE is the batch mean; the MSE
  is the mean over all (N, C, T) elements, as the official ``TET_loss``. By Jensen
  (CE is convex in the logits) ``L_SDT ≤ L_TET``.
- Neuron: ``u(t+1) = τ·u(t) + I(t)``, hard reset, τ = 0.5, V_th = 1, reset spike not
  detached: ``Neuron(threshold=1, current_decay=1, voltage_decay=0.5, reset="hard")``,
  triangle surrogate ``(1/γ²)·max(0, γ - |u - V_th|)``.
- BN statistics over batch and time: :class:`~snn2loihi.training.modules.BatchNormConv`.
- Time inheritance training (TIT, §4.3): train at a small T, then continue from those
  weights at the target T: a recipe's ``train.stages``, e.g. ``[{timesteps: 2, epochs: 12},
  {timesteps: 4, epochs: 3}]`` (:mod:`snn2loihi.training.trainer`).

Shapes: ``current`` is (N, C, T) (slayer's layout), ``labels`` (N,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sdt_loss(current: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``CE(mean_t O(t), y)``; also Rathi's hybrid loss (logits = membrane / T)."""
    return F.cross_entropy(current.mean(-1), labels)


def tet_loss(current: torch.Tensor, labels: torch.Tensor, lam: float = 0.05, phi: float = 1.0) -> torch.Tensor:
    """``(1 - λ)·mean_t CE(O(t), y) + λ·mean((O - φ)²)``; λ = 0 skips the MSE term."""
    n, c, t = current.shape
    per_step = current.permute(0, 2, 1).reshape(n * t, c)
    loss = F.cross_entropy(per_step, labels.repeat_interleave(t))
    if lam == 0:
        return loss
    return (1.0 - lam) * loss + lam * F.mse_loss(current, torch.full_like(current, phi))

