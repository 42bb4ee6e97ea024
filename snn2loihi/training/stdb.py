"""Hybrid ANN→SNN conversion + STDB fine-tuning (Rathi, Srinivasan, Panda, Roy, ICLR 2020).

Pipeline (the trainer runs it for ``method: hybrid``):

1. train a bias-free ANN with average pooling and no BN (:func:`bias_free_vgg`);
2. convert it by threshold balancing with :func:`snn2loihi.conversion.convert` into a
   soft-reset integrate-and-fire SNN (weights and per-layer thresholds copied);
3. :func:`stdb_network`: multiply the thresholds of the conv/dense neurons by κ (smaller T
   needs smaller thresholds), make the output a
   non-spiking :class:`~snn2loihi.training.modules.Readout` (Rathi's output integrator; the
   logits are its membrane / T), and give every neuron the STDB surrogate
   ``∂s/∂v = (α/θ)·exp(-β·Δt)`` (:class:`~snn2loihi.neuron.surrogate.STDB`, Δt = steps since
   the neuron's last spike), a detached reset and, optionally, dropout with one mask per
   sample for all time steps;
4. fine-tune the weights only (thresholds and leak are plain numbers, not parameters) with
   BPTT and cross-entropy for a few epochs at the small T.

Average pools are not trained and keep their θ: in Rathi's SNN a pool has no neuron and no
weights, and the conversion writes it as a depthwise conv with one constant weight per
channel (:func:`is_average_pool`). Scaling its θ by κ would multiply the rates by 1/κ once
more after every pool, and training its weights would turn it into a learned filter the
paper does not have; both made fine-tuning diverge (spike rates doubling within one epoch).

The converted network (κ = 1, ``conversion_timesteps`` steps) is evaluated first: its
accuracy is the baseline the hybrid network should reach with ≥ 5× fewer steps.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..blocks.network import SpikingNetwork
from ..blocks.soft_lif import Conv, Pool
from ..errors import TrainingError
from .inputs import InputEncoding
from .model import SNNClassifier
from .spec import network_from_spec, network_spec


def bias_free_vgg(input_shape, num_classes: int, config=(32, "A", 64, "A", 128), width: float = 1.0,
                  dropout: float = 0.2) -> torch.nn.Sequential:
    """Rathi et al.'s ANN (§1.2): 3×3 convs without bias, ReLU, dropout after each conv not
    followed by a pool, 2×2 average pools (``"A"``), a bias-free linear classifier; no BN.
    Input (N, C, H, W) images in [0, 1]."""
    c, h, w = (int(s) for s in input_shape)
    layers: list = []
    for i, item in enumerate(config):
        if item == "A":
            layers.append(torch.nn.AvgPool2d(2))
            h, w = h // 2, w // 2
            continue
        out = max(1, int(round(int(item) * width)))
        layers += [torch.nn.Conv2d(c, out, 3, padding=1, bias=False), torch.nn.ReLU()]
        if dropout and (i + 1 == len(config) or config[i + 1] != "A"):
            layers.append(torch.nn.Dropout(dropout))
        c = out
    layers += [torch.nn.Flatten(), torch.nn.Linear(c * h * w, num_classes, bias=False)]
    for m in layers:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return torch.nn.Sequential(*layers)


def is_average_pool(block: torch.nn.Module) -> bool:
    """Whether ``block`` is an average pool as the conversion writes it: a bias-free
    depthwise conv (groups = in = out channels) whose taps are one positive constant per
    channel, ``w[c] = (θ_in/θ_out)/k²``, or our :class:`~snn2loihi.blocks.soft_lif.Pool`."""
    if isinstance(block, Pool):
        return True
    syn = getattr(block, "synapse", None)
    if not isinstance(block, Conv) or getattr(syn, "bias", None) is not None:
        return False
    if not syn.groups == syn.in_channels == syn.out_channels:
        return False
    taps = syn.weight.detach().reshape(syn.out_channels, -1)
    return bool((taps > 0).all() and (taps == taps[:, :1]).all())


def stdb_network(snn: SpikingNetwork, num_classes: int, kappa: float = 1.0, alpha: float = 0.3, beta: float = 0.01,
                 dropout: float = 0.0, timesteps: int = 8, logit_scale: float = 1.0) -> SNNClassifier:
    """A converted SNN prepared for STDB fine-tuning (step 3 of the module docstring).

    Args:
        snn: the converted network (soft-reset IF neurons, thresholds from balancing).
        kappa: threshold scale κ for the conv/dense neurons (not the average pools, which
            also keep their weights frozen: :func:`is_average_pool`).
        alpha, beta: STDB surrogate parameters.
        dropout: dropout probability of the hidden layers (same mask at every step).
        logit_scale: multiplies the readout weights; the output threshold θ_out of the
            conversion (whose weights were divided by it) restores the ANN's logit scale,
            as in Rathi's output layer, which keeps the ANN's weights.
    """
    spec = copy.deepcopy(network_spec(snn))
    blocks = spec["blocks"]
    if any(block.get("bias") for block in blocks):
        raise TrainingError("hybrid STDB needs a bias-free ANN (Rathi et al.: no bias, no BN); the converted "
                            "network has bias currents")
    for i, (block, module) in enumerate(zip(blocks, snn.blocks[1:])):
        neuron = block.get("neuron")
        if neuron is None:
            continue
        if is_average_pool(module):
            block["trainable"] = False
            continue
        neuron["threshold"] = float(neuron["threshold"]) * kappa
        if neuron.get("v_init") is not None:  # keep u0 the same fraction of θ
            neuron["v_init"] = (np.asarray(neuron["v_init"]) * kappa).tolist()
        neuron["surrogate"] = {"name": "STDB", "alpha": alpha, "beta": beta}
        neuron["detach_reset"] = True
        if dropout and i < len(blocks) - 1:
            neuron["dropout"] = {"p": dropout, "per_step": False}
    last = blocks[-1]
    if last["type"] == "Dense":
        peak = float(snn.blocks[-1].synapse.weight.detach().abs().max()) * logit_scale
        scale = min(int(last["neuron"]["scale"]), 1 << max(0, int(np.floor(np.log2(254 / max(peak, 1e-12))))))
        blocks[-1] = {"type": "Readout", "in": last["in"], "out": last["out"], "scale": scale}
    net = network_from_spec(spec)
    with torch.no_grad():
        for new, old in zip(net.blocks, snn.blocks):
            if getattr(new, "synapse", None) is not None and not isinstance(new, Pool):
                new.synapse.weight.copy_(old.synapse.weight)
        net.blocks[-1].synapse.weight.mul_(logit_scale)
    return SNNClassifier(net, num_classes, timesteps=timesteps)


def hybrid_snn(ann: torch.nn.Module, calibration: np.ndarray, num_classes: int, args: dict,
               encoding: InputEncoding, timesteps: int, test: tuple[np.ndarray, np.ndarray],
               device: str = "cpu") -> tuple[SNNClassifier, SNNClassifier, dict]:
    """Convert ``ann`` and prepare it for STDB at ``timesteps``; also measure the converted
    network at ``conversion_timesteps`` (κ = 1) and at ``timesteps`` (κ) on ``test``.

    Returns:
        (model to fine-tune, the converted baseline at κ = 1 and ``conversion_timesteps``,
        info with thresholds and the two baseline accuracies).
    """
    from ..conversion import convert
    from .trainer import evaluate_classifier

    ann = ann.cpu().eval()
    t_conv = int(args["conversion_timesteps"])
    # one weight group per layer (STDB trains slayer blocks) and the float pass the recipe's
    # published baselines were measured with
    result = convert(ann, torch.as_tensor(calibration, dtype=torch.float32), t_conv, rule=args.get("rule", "max"),
                     fixed_point=False, split_weights=False)
    theta_out = float(list(result.thresholds.values())[-1])
    baseline = stdb_network(result.snn, num_classes, 1.0, timesteps=t_conv, logit_scale=theta_out)
    model = stdb_network(result.snn, num_classes, float(args["kappa"]), float(args["alpha"]), float(args["beta"]),
                         float(args.get("dropout", 0.0)), timesteps, logit_scale=theta_out)
    x, y = test
    info = {"thresholds": {str(name): float(theta) for name, theta in result.thresholds.items()},
            "conversion_timesteps": t_conv,
            "converted_accuracy": evaluate_classifier(baseline.to(device), x, y, encoding, t_conv, device=device)[0],
            "converted_accuracy_at_T": evaluate_classifier(model.to(device), x, y, encoding, timesteps,
                                                           device=device)[0],
            "timesteps": timesteps, "kappa": float(args["kappa"])}
    return model, baseline.cpu(), info
