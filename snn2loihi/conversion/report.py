"""Per-layer conversion error at the target T, split into its parts.

For a neuron of node n (threshold θ, T steps, initial voltage u0), let N be its spike count
in its window, Q = v_init + Σ_t input_t the total charge it received in that window
(threshold units, bias included) and z̄ = (Q - u0)/T its mean input per step. A constant
input z̄ would give ``N_q = clip(⌈Q⌉ - 1, 0, T)`` spikes (strict ``v > θ``). With a the
ANN activation, the error of the SNN's estimate ``r = θ·N/T`` splits exactly into::

    r - a = θ(N - N_q)/T                      deviation: inconstant input (§4.3)
          + θ(N_q/T - clip(z̄, 0, 1))          quantization: T steps of a constant input
          + θ·clip(z̄, 0, 1) - min(a, θ)       inherited: the mean input differs from the ANN's
          + min(a, θ) - a                     clipping: activations above θ

Each part is reported as an RMS over calibration samples and neurons, in units of θ (the
quantization part is bounded by 1/(2T) with u0 = θ/2 and 1/T with u0 = 0).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch

PARTS = ("deviation", "quantization", "inherited", "clipping")


@dataclass
class LayerError:
    """Error of one node at the target T (RMS in units of its threshold).

    Attributes:
        layer: block index in the converted network.
        node: node name.
        threshold: θ in ANN activation units; scale: the tuned factor c (θ = c·base).
        rate: mean spikes per neuron per step.
        total, deviation, quantization, inherited, clipping: RMS of each part / θ.
        bias: mean of (r - a) / θ.
    """

    layer: int
    node: str
    threshold: float
    scale: float
    rate: float = 0.0
    total: float = 0.0
    deviation: float = 0.0
    quantization: float = 0.0
    inherited: float = 0.0
    clipping: float = 0.0
    bias: float = 0.0


class ErrorAccumulator:
    """Sums of squares of the four parts over calibration chunks for one node."""

    def __init__(self):
        self.sums = {name: 0.0 for name in PARTS + ("total", "mean", "spikes")}
        self.count = 0
        #: Per channel: Σ (N/T - min(a/θ, 1)), the error without clipping, and its count.
        self.channel_sums = None
        self.channel_count = 0

    def add(self, count: torch.Tensor, charge: torch.Tensor, a: torch.Tensor, theta: float, timesteps: int,
            u0: torch.Tensor) -> None:
        """One chunk: spike counts and charges (N, C, ...), ANN activations a, initial u0 (C,)."""
        t = float(timesteps)
        u0 = u0.reshape((-1,) + (1,) * (count.dim() - 2)).to(charge.dtype)
        n_q = (torch.ceil(charge) - 1).clamp(0, t)
        mean_in = ((charge - u0) / t).clamp(0, 1)
        act = a.to(charge.dtype) / theta
        parts = {"deviation": (count - n_q) / t, "quantization": n_q / t - mean_in,
                 "inherited": mean_in - act.clamp(max=1), "clipping": act.clamp(max=1) - act}
        total = count / t - act
        for name, value in parts.items():
            self.sums[name] += float((value ** 2).sum())
        self.sums["total"] += float((total ** 2).sum())
        self.sums["mean"] += float(total.sum())
        self.sums["spikes"] += float(count.sum())
        self.count += count.numel()
        unclipped = (total - parts["clipping"]).transpose(0, 1).reshape(count.shape[1], -1)
        sums = unclipped.sum(1, dtype=torch.float64)
        self.channel_sums = sums if self.channel_sums is None else self.channel_sums + sums
        self.channel_count += unclipped.shape[1]

    def channel_mean(self) -> torch.Tensor:
        """(C,) mean of ``N/T - min(a/θ, 1)`` per channel (units of θ): the part of each
        channel's error that a shift of its charge can remove (clipping cannot)."""
        return self.channel_sums / max(self.channel_count, 1)

    def result(self, layer: int, node: str, theta: float, scale: float, timesteps: int) -> LayerError:
        n = max(self.count, 1)
        rms = {name: (self.sums[name] / n) ** 0.5 for name in PARTS + ("total",)}
        return LayerError(layer, node, theta, scale, rate=self.sums["spikes"] / n / timesteps,
                          bias=self.sums["mean"] / n, **rms)

    def mse(self) -> float:
        """Mean squared total error (the tuning objective)."""
        return self.sums["total"] / max(self.count, 1)


@dataclass
class ConversionReport:
    """What conversion did, per node, measured on the calibration batch at the target T."""

    timesteps: int
    rule: str
    block: str
    calib_samples: int
    timing: str
    layers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "layers"},
                "layers": [asdict(layer) for layer in self.layers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """One line per node: θ, c, rate and the RMS error parts in units of θ."""
        head = (f"{'layer':>5} {'node':<22} {'theta':>8} {'c':>4} {'rate':>6} {'total':>7} {'deviat.':>7} "
                f"{'quant.':>7} {'inher.':>7} {'clip':>7}")
        lines = [f"T={self.timesteps} rule={self.rule} block={self.block} calib={self.calib_samples} "
                 f"timing={self.timing} (RMS errors in units of each node's threshold)", head]
        for e in self.layers:
            lines.append(f"{e.layer:>5} {e.node[:22]:<22} {e.threshold:>8.3g} {e.scale:>4.2g} {e.rate:>6.3f} "
                         f"{e.total:>7.4f} {e.deviation:>7.4f} {e.quantization:>7.4f} {e.inherited:>7.4f} "
                         f"{e.clipping:>7.4f}")
        return "\n".join(lines)
