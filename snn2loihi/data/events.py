"""Event streams: a common event array, binning into spike frames, and event data converted
from static images by a simulated sensor (N-MNIST-style saccades).

Events are a structured array with fields ``t`` (int64, µs), ``x``, ``y`` (int16) and ``p``
(int8, 1 = ON, 0 = OFF). Readers of real files (:mod:`snn2loihi.data.event_files`) and the
converter below produce the same array, and :func:`events_to_frames` turns any of them into
the binary spike input of a network, (2, H, W, T).

**Converted data, not N-MNIST.** :func:`saccade_counts` imitates how N-MNIST was recorded
(Orchard et al. 2015: an ATIS sensor on a pan-tilt unit making three saccades of 100 ms
over a still image), with an idealised DVS pixel: the image, placed in a 34×34 field,
moves along a triangle path; each pixel follows the log intensity ``L = log(ε + I)`` of the
moving image (bilinear interpolation) and emits ``floor(|L - L_ref| / C)`` ON or OFF
events when it crosses its reference ``L_ref`` by the contrast threshold C, which then
moves by that many steps of C. It is deterministic. Data made this way must be reported as
"converted from <dataset>", never as N-MNIST.
"""
from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
#: Triangle path of the three saccades, (dx, dy) in pixels; it returns to the start.
SACCADE_PATH = ((-2.0, -1.0), (2.0, -1.0), (0.0, 2.0), (-2.0, -1.0))


def make_events(t, x, y, p) -> np.ndarray:
    """Pack equal-length sequences into an event array sorted by time (stable)."""
    events = np.empty(len(t), EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t, x, y, p
    return events[np.argsort(events["t"], kind="stable")]


def events_to_frames(events: np.ndarray, shape: tuple[int, int], timesteps: int,
                     duration: int | None = None) -> np.ndarray:
    """Binary spike frames (2, H, W, T), uint8: 1 where a pixel had ≥ 1 event of that polarity
    in the time bin. Bins split ``[t0, t0 + duration)`` evenly (default: first to last event).
    """
    frames = np.zeros((2,) + tuple(shape) + (timesteps,), np.uint8)
    if len(events) == 0:
        return frames
    t = events["t"] - events["t"].min()
    span = int(duration) if duration else int(t.max()) + 1
    bins = np.minimum(t * timesteps // max(span, 1), timesteps - 1)
    keep = (events["x"] >= 0) & (events["x"] < shape[1]) & (events["y"] >= 0) & (events["y"] < shape[0])
    frames[events["p"][keep].astype(np.int64), events["y"][keep], events["x"][keep], bins[keep]] = 1
    return frames


def _shift(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Images (N, H, W) translated by (dx, dy) pixels, bilinear, zero outside.

    The shift is the same for every pixel, so it is four integer-shifted slices weighted by
    the fractional parts."""
    n, h, w = images.shape
    pad = int(np.ceil(max(abs(dx), abs(dy)))) + 1
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    iy, ix = int(np.floor(-dy)), int(np.floor(-dx))
    fy, fx = -dy - iy, -dx - ix

    def window(oy: int, ox: int) -> np.ndarray:
        return padded[:, pad + iy + oy:pad + iy + oy + h, pad + ix + ox:pad + ix + ox + w]

    return ((1 - fy) * ((1 - fx) * window(0, 0) + fx * window(0, 1))
            + fy * ((1 - fx) * window(1, 0) + fx * window(1, 1)))


def saccade_counts(images: np.ndarray, steps_per_saccade: int = 10, margin: int = 3,
                   contrast: float = 0.25, eps: float = 0.1) -> np.ndarray:
    """Event counts of the simulated saccades, (N, S, 2, H + 2·margin, W + 2·margin), uint8.

    Args:
        images: (N, H, W) or (N, 1, H, W) intensities in [0, 1].
        steps_per_saccade: samples per saccade (S = 3 · steps_per_saccade in all).
        margin: zero border around the image (N-MNIST: 28 + 2·3 = 34).
        contrast: DVS contrast threshold C on the log intensity.
        eps: offset of the log, ``L = log(eps + I)``.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[:, 0]
    field = np.pad(images, ((0, 0), (margin, margin), (margin, margin)))
    reference = np.log(eps + _shift(field, *SACCADE_PATH[0]))
    counts = []
    for (x0, y0), (x1, y1) in zip(SACCADE_PATH[:-1], SACCADE_PATH[1:]):
        for k in range(1, steps_per_saccade + 1):
            f = k / steps_per_saccade
            level = np.log(eps + _shift(field, x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
            delta = level - reference
            on = np.floor(np.maximum(delta, 0) / contrast)
            off = np.floor(np.maximum(-delta, 0) / contrast)
            reference = reference + (on - off) * contrast
            counts.append(np.stack([off, on], axis=1))
    return np.stack(counts, axis=1).clip(0, 255).astype(np.uint8)


def saccade_frames(images: np.ndarray, timesteps: int, **kwargs) -> np.ndarray:
    """Binary spike frames (N, 2, H', W', T) of the simulated saccades: the S samples are
    split evenly into T bins; a pixel spikes in a bin if it had any event there."""
    counts = saccade_counts(images, **kwargs)
    samples = counts.shape[1]
    bins = np.arange(samples) * timesteps // samples
    frames = np.zeros(counts.shape[:1] + counts.shape[2:] + (timesteps,), np.uint8)
    for b in range(timesteps):
        frames[..., b] = counts[:, bins == b].max(axis=1) > 0
    return frames


def saccade_events(image: np.ndarray, saccade_ms: int = 100, **kwargs) -> np.ndarray:
    """The event array of one image's simulated saccades, in µs; the events of one sample
    share its time stamp, so ``events_to_frames(events, …, duration=3·saccade_ms·1000)``
    equals :func:`saccade_frames`."""
    counts = saccade_counts(np.asarray(image)[None], **kwargs)[0].astype(np.int64)  # (S, 2, H, W)
    samples = counts.shape[0]
    s, p, y, x = np.nonzero(counts)
    rep = np.repeat(np.arange(len(s)), counts[s, p, y, x])
    return make_events(s[rep] * (saccade_ms * 1000 * 3 // samples), x[rep], y[rep], p[rep])
