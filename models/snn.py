"""Model zoo: spiking VGG nets, STBP's CIFARNet, TET's VGGSNN and ResNet-19, at any width.

Every builder has the signature ``builder(input_shape, num_classes, neuron, analog=True,
**args) -> SNNClassifier`` that recipes call (``model: {builder: vggsnn, args: {...},
neuron: {...}}``):

- ``input_shape``: (C, H, W) of one sample as the first layer sees it;
- ``neuron``: plain neuron parameters (see :mod:`snn2loihi.training.spec`), shared by all
  layers (each layer's weight ``scale`` is chosen from its fan-in, see :func:`layer_scale`);
- ``analog``: the input is the analog image and the first conv is the encoder (STBP, TET);
  otherwise the input is spikes (rate code, converted events) and the first conv spikes on
  the chip like every other layer;
- ``width`` multiplies every channel count and hidden size (the papers' nets at width 1;
  a fraction of it to train on a CPU).

The papers' architectures (``shared/research/algorithms.md``):

- STBP CIFARNet (§2.6): 128C3(encoder) – 256C3 – AP2 – 512C3 – AP2 – 1024C3 – 512C3 –
  1024FC – 512FC – voting(10 per class).
- TET VGGSNN (§3.5): 64C3 – 128C3 – AP2 – 256C3 – 256C3 – AP2 – 512C3 – 512C3 – AP2 –
  512C3 – 512C3 – AP2 – FC; BN over batch and time after every conv; the last layer is a
  readout (no LIF).
- TET ResNet-19 (§3.5): 64C3 stem, 3 blocks of 128, 3 of 256 (stride 2), 2 of 512 (stride
  2), global average pool, FC 256 + LIF, readout.

Deviations that deployment forces: average pools are spiking integrate-and-fire layers
(``pool: spiking``, a Loihi core only receives spikes; TET's pools have no LIF) or stride-2
convs (``pool: stride``, what TET's own script instantiates as VGGSNNwoAP).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from snn2loihi.blocks.network import SpikingNetwork
from snn2loihi.blocks.soft_lif import Conv, Dense, Flatten, Pool
from snn2loihi.training.model import SNNClassifier
from snn2loihi.training.modules import BatchNormConv, BatchNormDense, Encoder, Readout
from snn2loihi.training.residual import Residual
from snn2loihi.training.spec import neuron_kwargs
from snn2loihi.training.stbp import NeuNorm

__all__ = ["layer_scale", "vgg", "vggsnn", "cifarnet", "resnet19"]


def layer_scale(fan_in: int, factor: float = 16.0) -> int:
    """Weight scale (a power of two, 64..32768) for a layer with ``fan_in`` inputs:
    ``2^ceil(log2(factor·√fan_in))``. The 8-bit weight grid then spans about ±8 standard
    deviations of a Kaiming initialisation (factor 16) in steps of about σ/15."""
    return int(min(max(2 ** math.ceil(math.log2(factor * math.sqrt(fan_in))), 64), 1 << 15))


def _neuron(params: dict, fan_in: int, factor: float, dropout: float = 0.0, per_step: bool = False) -> dict:
    spec = {**params, "scale": params.get("scale") or layer_scale(fan_in, factor)}
    if dropout:
        spec["dropout"] = {"p": dropout, "per_step": per_step}
    return neuron_kwargs(spec)


def _init(block, gain: float) -> None:
    """Kaiming-normal weights (fan-in) times ``gain``."""
    with torch.no_grad():
        w = block.synapse.weight
        w.normal_(0.0, gain * math.sqrt(2.0 / w[0].numel()))


def _pool_neuron(params: dict) -> dict:
    """Integrate-and-fire, soft reset, θ as the layer neurons: rate-preserving average pool."""
    return neuron_kwargs({"threshold": params.get("threshold", 1.0), "current_decay": 1.0, "voltage_decay": 0.0,
                          "reset": "soft", "surrogate": params.get("surrogate", {"name": "Exponential"})})


def vgg(input_shape: Sequence[int], num_classes: int, neuron: dict, analog: bool = True,
        channels: Sequence = (64, 128, "P", 256, 256, "P"), hidden: Sequence[int] = (), width: float = 1.0,
        batchnorm: bool = False, pool: str = "spiking", output: str = "readout", votes: int = 10,
        neunorm: bool = False, neunorm_decay: float = 0.5, dropout: float = 0.0, per_step_dropout: bool = False,
        scale_factor: float = 16.0, init_gain: float = 1.0, timesteps: int = 4) -> SNNClassifier:
    """Generic spiking VGG: 3×3 convs (``channels`` entries; ``"P"`` halves the resolution),
    then flatten, ``hidden`` dense layers, and the output.

    Args:
        batchnorm: tdBN on every conv/dense current (folded for export; needs current_decay 1).
        pool: ``spiking`` (IF average pool) or ``stride`` (the conv before "P" gets stride 2).
        output: ``readout`` (non-spiking, TET/Rathi) or ``voting`` (``votes`` spiking neurons
            per class, STBP).
        neunorm: NeuNorm after every hidden spiking conv (STBP ablation; not deployable).
        dropout: neuron dropout of the hidden layers; ``per_step_dropout`` draws a new mask
            every step (STBP's code) instead of one per sample (Rathi).
        scale_factor: see :func:`layer_scale`.
        init_gain: multiplies the Kaiming-normal initialisation (non-BN nets).
    """
    if pool not in ("spiking", "stride") or output not in ("readout", "voting"):
        raise ValueError(f"pool must be spiking|stride and output readout|voting, found {pool!r}, {output!r}")
    cfg = [c if c == "P" else max(1, int(round(c * width))) for c in channels]
    hidden = [max(1, int(round(h * width))) for h in hidden]
    shape = tuple(int(s) for s in input_shape)
    encoder: Optional[Encoder] = None
    blocks: list = []
    conv_cls = BatchNormConv if batchnorm else Conv
    for i, c in enumerate(cfg):
        if c == "P":
            continue
        stride = 2 if pool == "stride" and i + 1 < len(cfg) and cfg[i + 1] == "P" else 1
        if analog and encoder is None:
            encoder = Encoder(_neuron(neuron, 9 * shape[0], scale_factor), shape, c, 3, stride, 1, batchnorm)
            if not batchnorm:
                _init(encoder, init_gain)
            shape = encoder.out_shape
        else:
            p = _neuron(neuron, 9 * shape[0], scale_factor, dropout, per_step_dropout)
            block = conv_cls(p, shape[0], c, 3, stride=stride, padding=1)
            if not batchnorm:
                _init(block, init_gain)
            blocks.append(block)
            shape = (c, (shape[1] - 1) // stride + 1, (shape[2] - 1) // stride + 1)
            if neunorm:
                blocks.append(NeuNorm(shape, neunorm_decay))
        if pool == "spiking" and i + 1 < len(cfg) and cfg[i + 1] == "P":
            blocks.append(Pool(_pool_neuron(neuron), 2))
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
    blocks.append(Flatten())
    features = int(np.prod(shape))
    dense_cls = BatchNormDense if batchnorm else Dense
    for h in hidden:
        block = dense_cls(_neuron(neuron, features, scale_factor, dropout, per_step_dropout), features, h)
        if not batchnorm:
            _init(block, init_gain)
        blocks.append(block)
        features = h
    if output == "readout":
        last = Readout(features, num_classes, scale=layer_scale(features, scale_factor))
        out_votes = 1
    else:
        last = Dense(_neuron(neuron, features, scale_factor), features, num_classes * votes)
        out_votes = votes
    _init(last, init_gain if output == "voting" else 1.0)
    blocks.append(last)
    net = SpikingNetwork(encoder.out_shape if encoder else tuple(input_shape), blocks)
    return SNNClassifier(net, num_classes, encoder=encoder, votes=out_votes, timesteps=timesteps)


def vggsnn(input_shape: Sequence[int], num_classes: int, neuron: dict, analog: bool = True, width: float = 1.0,
           depth: int = 4, pool: str = "stride", **kwargs) -> SNNClassifier:
    """TET's VGGSNN with BN over batch and time and a readout; ``depth`` (1–4) keeps the
    first stages (each: two convs and a "P"), so 28×28 inputs can stop at 7×7 or 3×3."""
    stages = [(64, 128), (256, 256), (512, 512), (512, 512)][:depth]
    channels = [c for stage in stages for c in (*stage, "P")]
    return vgg(input_shape, num_classes, neuron, analog, channels=channels, width=width, batchnorm=True,
               pool=pool, output="readout", **kwargs)


def cifarnet(input_shape: Sequence[int], num_classes: int, neuron: dict, analog: bool = True, width: float = 1.0,
             votes: int = 10, **kwargs) -> SNNClassifier:
    """STBP's CIFARNet: 128C3(enc)–256C3–AP2–512C3–AP2–1024C3–512C3–1024FC–512FC–voting."""
    return vgg(input_shape, num_classes, neuron, analog, channels=(128, 256, "P", 512, "P", 1024, 512),
               hidden=(1024, 512), width=width, output="voting", votes=votes, **kwargs)


def resnet19(input_shape: Sequence[int], num_classes: int, neuron: dict, analog: bool = True, width: float = 1.0,
             blocks: Sequence[int] = (3, 3, 2), scale_factor: float = 16.0, timesteps: int = 4) -> SNNClassifier:
    """TET's ResNet-19 (BN over batch and time, LIF after each residual addition). Trains and
    evaluates in torch; it exports only once the netx chain has a residual layer."""
    c = lambda n: max(1, int(round(n * width)))  # noqa: E731
    shape = tuple(int(s) for s in input_shape)
    stem = c(64)
    encoder = Encoder(_neuron(neuron, 9 * shape[0], scale_factor), shape, stem, 3, 1, 1, batchnorm=True) \
        if analog else None
    layers: list = [] if analog else [BatchNormConv(_neuron(neuron, 9 * shape[0], scale_factor), shape[0], stem, 3,
                                                    padding=1)]
    channels, hw = stem, shape[1:]
    for stage, (count, out) in enumerate(zip(blocks, (c(128), c(256), c(512)))):
        for k in range(count):
            stride = 2 if stage > 0 and k == 0 else 1
            layers.append(Residual(_neuron(neuron, 9 * channels, scale_factor), channels, out, stride))
            channels, hw = out, tuple((s - 1) // stride + 1 for s in hw)
    layers.append(Pool(_pool_neuron(neuron), list(hw)))
    layers.append(Flatten())
    fc = c(256)
    layers.append(BatchNormDense(_neuron(neuron, channels, scale_factor), channels, fc))
    layers.append(Readout(fc, num_classes, scale=layer_scale(fc, scale_factor)))
    net = SpikingNetwork(encoder.out_shape if encoder else shape, layers)
    return SNNClassifier(net, num_classes, encoder=encoder, timesteps=timesteps)
