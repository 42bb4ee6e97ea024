"""Rate coding of analog inputs into binary spike trains, in slayer's layout (..., T)."""
from __future__ import annotations

import numpy as np


def rate_encode(x: np.ndarray, timesteps: int, method: str = "uniform", seed: int = 0) -> np.ndarray:
    """Encode intensities ``x`` in [0, 1] (any shape) as spikes (*x.shape, T), uint8.

    - ``uniform`` (deterministic): ``c(t) = floor((t+1)·x)``, spike at t when c(t) > c(t-1);
      exactly ``floor(T·x)`` evenly spaced spikes.
    - ``poisson``: independent Bernoulli(x) spikes per step, from ``seed``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"intensities must lie in [0, 1], found [{x.min()}, {x.max()}]")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, found {timesteps}")
    if method == "uniform":
        counts = np.floor(x[..., None] * np.arange(1, timesteps + 1) + 1e-9)
        return np.diff(counts, axis=-1, prepend=0).astype(np.uint8)
    if method == "poisson":
        rng = np.random.default_rng(seed)
        return (rng.random(x.shape + (timesteps,)) < x[..., None]).astype(np.uint8)
    raise ValueError(f"unknown encoding {method!r} (uniform, poisson)")


def pad_time(spikes: np.ndarray, steps: int) -> np.ndarray:
    """Append ``steps`` silent steps, e.g. the network latency, so the last layer's
    response to the final input step fits in the window."""
    pad = [(0, 0)] * (spikes.ndim - 1) + [(0, steps)]
    return np.pad(spikes, pad)
