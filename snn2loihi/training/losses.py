"""Losses on output spike trains (N, F, T)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def spike_count_cross_entropy(spikes: torch.Tensor, labels: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Cross-entropy on output spike counts: ``CE(gain · Σ_t s[:, :, t], y)``.

    Args:
        spikes: (N, F, T) output spikes.
        labels: (N,) class indices.
        gain: logit scale per spike.
    """
    return F.cross_entropy(gain * spikes.sum(-1), labels)


def predict(spikes: torch.Tensor) -> torch.Tensor:
    """Class = most output spikes; ties go to the lowest index. (N, F, T) → (N,)."""
    return spikes.sum(-1).argmax(-1)
