"""A trained classifier on the chip: export, emulator accuracy, Lava-vs-emulator check.

:func:`load_classifier` rebuilds a checkpoint's model from its plain-data architecture;
:func:`export_classifier` writes its netx file; :func:`evaluate_chip` runs the exported
network (the re-read file) on the batched emulator over a whole test split and scores it
exactly as the chip would (:func:`~snn2loihi.training.model.chip_scores`);
:func:`lava_check` runs a subset on Lava's CPU backend and counts spike values that differ
from the emulator at every layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from .. import ir
from ..netx import read_network, write_network
from .checkpoint import load_checkpoint
from .inputs import InputEncoding
from .model import SNNClassifier, chip_scores
from .trainer import TEST_EPOCH


@dataclass
class ChipResult:
    """Accuracy of the fixed-point network and its activity.

    Attributes:
        accuracy: fraction of correct predictions.
        samples: samples evaluated.
        spikes_per_inference: mean number of spikes per sample over all layers (input
            neurons included), over the window of T + latency steps.
        overflow: 24-bit current wraps and voltage clips the emulator saw.
        predictions: (N,) predicted classes.
    """

    accuracy: float
    samples: int
    spikes_per_inference: float
    overflow: dict = field(default_factory=dict)
    predictions: Optional[np.ndarray] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "predictions"}


def load_classifier(path: str) -> tuple[SNNClassifier, dict]:
    """(model, checkpoint) for a trainer checkpoint; the model is in eval mode on the CPU."""
    from ..errors import CheckpointError

    state = load_checkpoint(path)
    if not state.get("model_spec"):
        raise CheckpointError(path, "holds the ANN stage of a hybrid run; no spiking model to export yet")
    model = SNNClassifier.from_spec(state["model_spec"])
    model.load_state_dict(state["model_state"])
    model.eval()
    return model, state


def export_classifier(model: SNNClassifier, path: str):
    """Quantize ``model`` and write its netx file; returns (network read back, report)."""
    net, report = model.to_ir()
    write_network(net, path)
    return read_network(path), report


def _chip_batch(model: SNNClassifier, net: ir.Network, encoding: InputEncoding, x: np.ndarray,
                index: np.ndarray) -> np.ndarray:
    if model.encoder is not None:
        return model.chip_input(x[index], net.latency)
    return model.chip_input(encoding(x[index], index, model.timesteps, TEST_EPOCH).numpy(), net.latency)


def evaluate_chip(model: SNNClassifier, net: ir.Network, x: np.ndarray, y: np.ndarray, encoding: InputEncoding,
                  batch_size: int = 256, progress=None, device: str = "cpu") -> ChipResult:
    """Emulator accuracy of ``net`` (the export of ``model``) on images x (N, C, H, W); the
    emulator runs on ``device``."""
    from ..sim.emulator import Emulator

    emulator = Emulator(net, device)
    predictions, spikes, overflow = [], 0, {"current_wraps": 0, "voltage_clips": 0, "conv_wraps": 0}
    starts = range(0, len(x), batch_size)
    for start in (progress(starts) if progress else starts):
        index = np.arange(start, min(start + batch_size, len(x)))
        result = emulator.run(_chip_batch(model, net, encoding, x, index), record_all=True, batch_size=batch_size)
        predictions.append(chip_scores(model, net, result).argmax(-1))
        spikes += sum(int(s.sum()) for s in result.spikes.values())
        overflow["current_wraps"] += result.overflow.current_wraps
        overflow["voltage_clips"] += result.overflow.voltage_clips
        overflow["conv_wraps"] += result.conv_wraps
    predictions = np.concatenate(predictions)
    return ChipResult(float((predictions == y).mean()), int(len(x)), spikes / len(x), overflow, predictions)


def lava_check(model: SNNClassifier, net: ir.Network, x: np.ndarray, y: np.ndarray, encoding: InputEncoding,
               samples: int = 20, chunk: int = 10) -> dict:
    """Run ``samples`` samples on Lava CPU and on the emulator; compare every layer's spikes.

    Returns:
        ``{"samples", "spike_values_compared", "mismatched_spikes", "lava_accuracy"}``.
    """
    from ..sim.emulator import Emulator
    from ..sim.lava_runner import run_lava

    n = min(samples, len(x))
    compared = mismatched = correct = 0
    for start in range(0, n, chunk):
        index = np.arange(start, min(start + chunk, n))
        chip_x = _chip_batch(model, net, encoding, x, index)
        lava = run_lava(net, chip_x, record_all=True)
        emulated = Emulator(net).run(chip_x, record_all=True)
        for layer, spikes in lava.spikes.items():
            compared += spikes.size
            mismatched += int((spikes != emulated.spikes[layer]).sum())
        correct += int((chip_scores(model, net, lava).argmax(-1) == y[index]).sum())
    return {"samples": n, "spike_values_compared": compared, "mismatched_spikes": mismatched,
            "lava_accuracy": correct / max(n, 1)}
