"""A plain, seeded training loop for spiking classifiers with progress bars."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import predict


@dataclass
class History:
    """Per-epoch mean loss, train accuracy and output spike rate."""

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    spike_rate: list = field(default_factory=list)


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, loss_fn: Callable, epochs: int,
        batch_size: int = 32, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> History:
    """Train ``model`` on spikes ``x`` (N, *input_shape, T) and labels ``y`` (N,) with Adam.

    Raises:
        FloatingPointError: the loss became NaN or infinite (training stops at once).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = History()
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(xt))
        losses, correct, rate = [], 0, []
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False)
        for start in bar:
            idx = torch.as_tensor(order[start:start + batch_size])
            out = model(xt[idx])
            loss = loss_fn(out, yt[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch + 1}; stopping")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            correct += int((predict(out.detach()) == yt[idx]).sum())
            rate.append(float(out.detach().mean()))
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", acc=f"{correct / min(len(order), start + len(idx)):.3f}",
                            rate=f"{np.mean(rate):.3f}")
        history.loss.append(float(np.mean(losses)))
        history.accuracy.append(correct / len(order))
        history.spike_rate.append(float(np.mean(rate)))
    return history


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Accuracy of ``model`` (most output spikes wins) on (x, y)."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        out = model(torch.as_tensor(x[start:start + batch_size], dtype=torch.float32))
        correct += int((predict(out) == torch.as_tensor(y[start:start + batch_size])).sum())
    return correct / len(x)
