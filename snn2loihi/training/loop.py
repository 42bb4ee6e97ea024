"""The epoch loop shared by every trainer, and a plain seeded ``fit``/``evaluate`` on arrays.

:func:`run_epoch` is the one place where a batch becomes a gradient step: it scales the
loss for data-parallel ranks, stops on a non-finite loss or gradient (before the optimizer
touches the weights), and reports the mean loss, accuracy and spike rate, summed over all
ranks. :class:`~snn2loihi.training.trainer.Trainer` (recipes, checkpoints, DDP) and
:func:`fit` (the demo's arrays) both call it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import TrainingError
from .distributed import Distributed
from .losses import predict

#: ``step(x, y) -> (loss, scores (N, C), spike rate or None)`` for one (local) batch.
Step = Callable[[torch.Tensor, torch.Tensor], tuple]


@dataclass
class History:
    """Per-epoch mean loss, train accuracy and output spike rate."""

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    spike_rate: list = field(default_factory=list)


def run_epoch(step: Step, parameters: list, batches: Iterable[tuple], optimizer: torch.optim.Optimizer,
              dist: Optional[Distributed] = None, desc: str = "", progress: bool = True,
              grad_clip: Optional[float] = None, total: Optional[int] = None) -> dict:
    """One pass over ``batches`` of ``(x, y, n_global)``.

    Each rank's mean loss is scaled by ``n_local · world / n_global`` before ``backward``, so
    DDP's gradient average equals the gradient of the mean over the whole global batch.

    ``step`` returns class scores (N, C); the prediction is their arg-max (ties: lowest class).

    Returns:
        ``{"loss", "accuracy", "spike_rate", "samples"}`` over all ranks.

    Raises:
        TrainingError: the loss or a gradient became NaN or infinite (the weights are left
            as they were before that batch).
    """
    dist = dist or Distributed()
    sums = np.zeros(4)  # loss·n, correct, rate·n, n
    bar = tqdm(batches, desc=desc, disable=not (progress and dist.main), leave=False, total=total)
    for index, (x, y, n_global) in enumerate(bar):
        loss, scores, rate = step(x, y)
        n = len(y)
        optimizer.zero_grad(set_to_none=True)
        (loss * (n * dist.world / n_global)).backward()
        finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(p.grad).all())
                                                    for p in parameters if p.grad is not None)
        if dist.any(not finite):
            raise TrainingError(f"{desc or 'training'}: the loss or a gradient became non-finite at batch "
                                f"{index + 1} (loss {float(loss):.4g} on rank {dist.rank}); stopped before the "
                                f"update")
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        rate = float(rate) if rate is not None else float("nan")
        sums += (float(loss) * n, int((scores.argmax(-1) == y).sum()), rate * n, n)
        bar.set_postfix(loss=f"{sums[0] / sums[3]:.4f}", acc=f"{sums[1] / sums[3]:.3f}",
                        rate=f"{sums[2] / sums[3]:.3f}")
    loss_sum, correct, rate_sum, count = dist.sum(sums.tolist())
    count = max(count, 1)
    return {"loss": loss_sum / count, "accuracy": correct / count, "spike_rate": rate_sum / count,
            "samples": int(count)}


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, loss_fn: Callable, epochs: int,
        batch_size: int = 32, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> History:
    """Train ``model`` on spikes ``x`` (N, *input_shape, T) and labels ``y`` (N,) with Adam.

    ``loss_fn(output_spikes, labels)``; the prediction is the output neuron with most spikes.

    Raises:
        TrainingError: the loss became NaN or infinite (training stops at once).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    history = History()
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)

    def step(xb, yb):
        out = model(xb)
        return loss_fn(out, yb), out.detach().sum(-1), out.detach().mean()

    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(xt))
        batches = ((xt[idx], yt[idx], len(idx)) for idx in
                   (torch.as_tensor(order[s:s + batch_size]) for s in range(0, len(order), batch_size)))
        stats = run_epoch(step, parameters, batches, optimizer, desc=f"epoch {epoch + 1}/{epochs}",
                          progress=progress, total=-(-len(order) // batch_size))
        history.loss.append(stats["loss"])
        history.accuracy.append(stats["accuracy"])
        history.spike_rate.append(stats["spike_rate"])
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
