"""Threshold rules: how each node's threshold θ (its activation clip) is chosen.

A rule is data: a *base* statistic of the node's ANN activations on the calibration batch
and the *scales* c tried around it; the converter keeps, node by node from the input, the
c whose SNN (at the target T, fed by the already converted layers) gives the smallest
mean squared conversion error ``E[(r - a)²]`` (r: the SNN's rate × θ, a: the ANN
activation). With a single scale the rule is a plain threshold-balancing rule.

- ``max``: θ = max activation (Diehl et al. 2015; never clips, large quantization error).
- ``percentile``: θ = the p-th percentile of the activations, zeros included (p = 99.9 by
  default, as the DSR code of the TTRBR paper's first author initialises its thresholds).
- ``clip``: θ = λ, the clip the ANN learned with its clip-floor-shift activation
  (:mod:`~.activation`; QCFS, Bu et al. 2022): the SNN then reproduces the ANN's own
  quantization. Nodes without a clip (ReLU, pools, relays) fall back to the percentile.
- ``tuned``: θ = c·base with c from ``TUNE_SCALES`` chosen by measured error, base = the
  trained clip λ where the node has one, else P_p: the placeholder for TTRBR's threshold
  tuning, whose exact rule could not be retrieved (research notes §4.4).

Under a full hold (h ≥ T) ``tuned`` searches no scale for a clip-floor-shift node of
L ≤ T levels: θ = λ is the ANN's own clip on a grid at least as fine as the ANN's
(``converter._Builder._keeps_clip``). At L = T such a node converts without error, so
``clip`` and ``tuned`` leave its bias uncorrected too (``_Builder._lossless``;
docs/residual.md).

Add a rule by adding a :class:`ThresholdRule` to ``RULES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

#: Scales c tried by the ``tuned`` rule (θ = c · percentile).
TUNE_SCALES = (0.4, 0.55, 0.7, 0.85, 1.0, 1.15)
#: Values sampled for the percentile (the exact percentile of a random subset).
_PERCENTILE_SAMPLE = 1 << 22


@dataclass(frozen=True)
class ThresholdRule:
    """θ = c · base(activations), c ∈ scales chosen by the smallest measured error.

    Attributes:
        name: rule id.
        base: (activations (N, ...) of one node, percentile, the node's trained clip λ or
            None) → float statistic.
        scales: the c tried (one value: no search).
    """

    name: str
    base: Callable[[torch.Tensor, float, Optional[float]], float]
    scales: tuple = (1.0,)


def maximum(a: torch.Tensor, percentile: float, clip: Optional[float] = None) -> float:
    """max over the batch and all neurons."""
    return float(a.max())


def percentile_of(a: torch.Tensor, percentile: float, clip: Optional[float] = None) -> float:
    """p-th percentile of all values (a random sample of 2^22 when there are more)."""
    flat = a.detach().reshape(-1).float()
    if flat.numel() > _PERCENTILE_SAMPLE:
        gen = torch.Generator().manual_seed(0)
        flat = flat[torch.randint(flat.numel(), (_PERCENTILE_SAMPLE,), generator=gen)]
    return float(np.percentile(flat.numpy(), percentile))


def trained_clip(a: torch.Tensor, percentile: float, clip: Optional[float] = None) -> float:
    """The ANN's trained clip λ; the percentile for a node without one."""
    return percentile_of(a, percentile) if clip is None else float(clip)


RULES = {
    "max": ThresholdRule("max", maximum),
    "percentile": ThresholdRule("percentile", percentile_of),
    "clip": ThresholdRule("clip", trained_clip),
    "tuned": ThresholdRule("tuned", trained_clip, TUNE_SCALES),
}


def base_threshold(rule: ThresholdRule, a: torch.Tensor, percentile: float, clip: Optional[float] = None) -> float:
    """The rule's base θ for activations ``a`` of a node with trained clip ``clip`` (or
    None); a node that is (almost) never active falls back to its maximum, and a dead node
    to 1 (its rate is 0 either way)."""
    theta = rule.base(a, percentile, clip)
    if theta <= 0:
        theta = float(a.max())
    return theta if theta > 0 else 1.0
