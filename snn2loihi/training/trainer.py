"""Recipe-driven training: stages (time inheritance), checkpoints, resume, DDP, NaN stops.

``Trainer(recipe, out_dir).run(resume=False)`` trains the recipe's model with its method:

1. builds the model with the recipe's builder from the model zoo (``models/snn.py``; for
   ``hybrid`` first the ANN of ``models/ann.py``, trained, then converted and prepared
   for STDB fine-tuning, see :mod:`snn2loihi.training.stdb`);
2. runs the stages in order; each stage sets T (time-inheritance training: a later stage
   at a larger T continues from the weights of the earlier one) and gets a fresh optimizer
   and learning-rate schedule;
3. after every epoch writes ``OUT/checkpoint.pt`` atomically (rank 0 only). A non-finite
   loss or gradient stops the run with :class:`~snn2loihi.errors.TrainingError` before the
   update, so the checkpoint on disk is the last good one;
4. at the end evaluates the test split in float (the trained timing) and in fixed point
   with the chip's timing (torch; equals the emulator) and writes ``OUT/summary.json``.

Determinism: the model is initialised from ``seed``; every epoch re-seeds its shuffle,
Poisson input and dropout from (seed, stage, epoch, rank), so a run resumed from any
checkpoint continues exactly as the uninterrupted run (same thread count).
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..atomic import write_json
from ..errors import CheckpointError, TrainingError
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import Distributed
from .inputs import InputEncoding, load_dataset
from .loop import run_epoch
from .model import SNNClassifier
from .recipe import normalize, stages
from .stbp import voting_mse
from .tet import sdt_loss, tet_loss

CHECKPOINT = "checkpoint.pt"
#: The converted network of a hybrid run (κ = 1, conversion T), in checkpoint format.
CONVERTED = "converted.pt"
SUMMARY = "summary.json"
#: Poisson streams of the test split use this "epoch" in their seed.
TEST_EPOCH = 1 << 30


def import_zoo(module: str):
    """``models.<module>`` of this repository (``models/`` sits beside ``snn2loihi/``)."""
    try:
        return importlib.import_module(f"models.{module}")
    except ModuleNotFoundError as err:
        if not err.name or not err.name.startswith("models"):
            raise
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(root, "models", "__init__.py")) and root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(f"models.{module}")
    except ModuleNotFoundError:
        raise TrainingError(f"the model zoo models/{module}.py is not importable (run from the repository, "
                            f"which holds models/ beside snn2loihi/)") from None


def objective(recipe: dict, num_classes: int):
    """The method's loss ``loss(output (N, F, T), labels)``."""
    method, args = recipe["method"], recipe["method_args"]
    if method == "tet":
        return lambda out, y: tet_loss(out, y, lam=float(args["lambda"]), phi=float(args["phi"]))
    if method == "stbp":
        return lambda out, y: voting_mse(out, y, num_classes)
    return sdt_loss  # sdt, and hybrid (Rathi: CE of the readout membrane / T)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@torch.no_grad()
def evaluate_classifier(model: SNNClassifier, x: np.ndarray, y: np.ndarray, encoding: InputEncoding,
                        timesteps: int, batch_size: int = 256, device: str = "cpu",
                        progress: bool = False) -> tuple[float, float]:
    """(accuracy, mean spike rate) of ``model`` at ``timesteps`` on images x (N, C, H, W)."""
    model.eval()
    model.timesteps = timesteps
    correct, rate = 0, 0.0
    for start in tqdm(range(0, len(x), batch_size), desc="evaluate", disable=not progress, leave=False):
        idx = np.arange(start, min(start + batch_size, len(x)))
        out, r = model(encoding(x[idx], idx, timesteps, TEST_EPOCH).to(device))
        correct += int((model.scores(out).argmax(-1).cpu() == torch.as_tensor(y[idx])).sum())
        rate += float(r) * len(idx)
    return correct / len(x), rate / len(x)


class Trainer:
    """Runs one recipe into ``out_dir`` (see the module docstring).

    Args:
        recipe: a recipe dict (as :func:`~snn2loihi.training.recipe.load_recipe` returns).
        out_dir: folder of ``checkpoint.pt`` and ``summary.json``.
        progress: show progress bars (rank 0).
        device: overrides the recipe's ``device`` (``cpu``, ``cuda``).
    """

    def __init__(self, recipe: dict, out_dir: str, progress: bool = True, device: Optional[str] = None):
        self.recipe = normalize(recipe)
        self.out_dir = out_dir
        self.progress = progress
        self.device = device or self.recipe["device"]
        self.dist = Distributed.from_env(self.device)
        self.device = self.dist.device
        if self.device.startswith("cuda"):
            # The fixed-point forward relies on exact float32 products of integers; cuDNN's
            # TF32 convolutions round operands to 10-bit mantissas (default on Ampere+).
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.path = os.path.join(out_dir, CHECKPOINT)
        self.data, self.num_classes = load_dataset(self.recipe["data"])
        self.encoding = InputEncoding(self.recipe["data"]["input"], self.recipe["seed"])
        self.stages = stages(self.recipe)
        self.history: list = []
        self.info: dict = {}

    # --- model construction ----------------------------------------------------------
    def _build_snn(self) -> SNNClassifier:
        cfg = self.recipe["model"]
        builder = getattr(import_zoo("snn"), cfg["builder"], None)
        if builder is None:
            raise TrainingError(f"models/snn.py has no builder {cfg['builder']!r}")
        torch.manual_seed(self.recipe["seed"])
        shape = self.encoding.shape(tuple(self.data.x_train.shape[1:]))
        return builder(input_shape=shape, num_classes=self.num_classes, neuron=cfg["neuron"],
                       analog=self.encoding.kind == "analog", **cfg["args"])

    def _build_ann(self) -> torch.nn.Module:
        """The ANN of a hybrid recipe: ``bias_free_vgg`` (Rathi's constraints), or an
        architecture of ``models/ann.py`` by name (BN folded by the conversion)."""
        from .stdb import bias_free_vgg

        cfg = self.recipe["ann"]
        torch.manual_seed(self.recipe["seed"])
        shape = tuple(self.data.x_train.shape[1:])
        if cfg["builder"] == "bias_free_vgg":
            return bias_free_vgg(shape, self.num_classes, **cfg["args"])
        return import_zoo("ann").build({"name": cfg["builder"], "in_channels": shape[0],
                                        "num_classes": self.num_classes, **cfg["args"]})

    def _convert(self, ann: torch.nn.Module, timesteps: int) -> SNNClassifier:
        from .stdb import hybrid_snn

        args = self.recipe["method_args"]
        calib = self.data.x_train[:int(args["calibration_samples"])]
        limit = self.recipe["train"]["eval_samples"]
        model, baseline, self.info["conversion"] = hybrid_snn(
            ann, calib, self.num_classes, args, self.encoding, timesteps,
            (self.data.x_test[:limit], self.data.y_test[:limit]), self.device)
        if self.dist.main:
            save_checkpoint(os.path.join(self.out_dir, CONVERTED), {
                "recipe": self.recipe, "kind": "snn", "stage": -1, "epoch": 0, "model_spec": baseline.spec(),
                "model_state": baseline.state_dict(), "info": self.info, "done": True})
        return model

    # --- one stage -------------------------------------------------------------------
    def _optimizer(self, params: list, stage: dict):
        if stage["optimizer"] == "sgd":
            opt = torch.optim.SGD(params, lr=stage["lr"], momentum=stage["momentum"],
                                  weight_decay=stage["weight_decay"])
        else:
            opt = torch.optim.Adam(params, lr=stage["lr"], weight_decay=stage["weight_decay"])
        epochs = max(int(stage["epochs"]), 1)
        if stage["schedule"] == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        elif stage["schedule"] == "step":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, [max(1, epochs // 2), max(1, 3 * epochs // 4)], 0.1)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        return opt, sched

    def _batches(self, stage_index: int, epoch: int, stage: dict, batch_size: int):
        x, timesteps = self.data.x_train, int(stage["timesteps"])
        encoding = InputEncoding("analog") if stage["kind"] == "ann" else self.encoding
        order = np.random.default_rng([self.recipe["seed"], stage_index, epoch]).permutation(len(x))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < self.dist.world:
                return  # too few samples left to give every rank one
            mine = np.sort(self.dist.shard(idx))
            yield (encoding(x[mine], mine, timesteps, _seed(stage_index, epoch)).to(self.device),
                   torch.as_tensor(self.data.y_train[mine]).to(self.device), len(idx))

    def _step(self, model, wrapped, stage: dict):
        if stage["kind"] == "ann":
            def step(x, y):
                logits = wrapped(x)
                return F.cross_entropy(logits, y), logits.detach(), None
            return step
        loss_fn = objective(self.recipe, self.num_classes)

        def step(x, y):
            out, rate = wrapped(x)
            return loss_fn(out, y), model.scores(out.detach()), rate.detach()
        return step

    # --- the run ---------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        """Train all stages (continuing from ``checkpoint.pt`` with ``resume``); returns the summary."""
        position, state = (0, 0), None
        if resume:
            state = self._load_resume()
            position = (state["stage"], state["epoch"])
            self.history = list(state["history"])
            self.info = dict(state.get("info") or {})
        model = None
        start = time.perf_counter() - (state["seconds"] if state else 0.0)
        for index, stage in enumerate(self.stages):
            if index < position[0]:
                continue
            first_epoch = position[1] if index == position[0] else 0
            model = self._stage_model(model, index, stage, state if index == position[0] else None)
            if first_epoch >= stage["epochs"] and index + 1 < len(self.stages):
                continue
            model = self._run_stage(model, index, stage, first_epoch, state if index == position[0] else None,
                                    start)
            state = None
        return self._finish(model, time.perf_counter() - start)

    def _load_resume(self) -> dict:
        state = load_checkpoint(self.path)
        if state["recipe"] != self.recipe:
            raise CheckpointError(self.path, "was written by a different recipe; resume with the same recipe "
                                             "or choose another --out")
        return state

    def _stage_model(self, model, index: int, stage: dict, state: Optional[dict]):
        """The model at the start of stage ``index``: rebuilt from a checkpoint, built fresh,
        or carried over (converted after the ANN stage)."""
        if state is not None:
            model = (self._build_ann() if stage["kind"] == "ann" else SNNClassifier.from_spec(state["model_spec"]))
            model.load_state_dict(state["model_state"])
        if model is None:
            model = self._build_ann() if stage["kind"] == "ann" else self._build_snn()
        if stage["kind"] == "snn" and not isinstance(model, SNNClassifier):
            model = self._convert(model, int(stage["timesteps"]))
        if isinstance(model, SNNClassifier):
            model.timesteps = int(stage["timesteps"])
            model.timing = self.recipe["train"]["timing"]
        return model.to(self.device)

    def _run_stage(self, model, index: int, stage: dict, first_epoch: int, state: Optional[dict], start: float):
        wrapped = self.dist.wrap(model)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, schedule = self._optimizer(params, stage)
        if state is not None:
            optimizer.load_state_dict(state["optimizer_state"])
            schedule.load_state_dict(state["schedule_state"])
        step = self._step(model, wrapped, stage)
        batch = int(self.recipe["train"]["batch_size"])
        timesteps = int(stage["timesteps"])
        for epoch in range(first_epoch, int(stage["epochs"])):
            torch.manual_seed(_seed(self.recipe["seed"], index, epoch, self.dist.rank))
            model.train()
            t0 = time.perf_counter()
            desc = f"stage {index + 1}/{len(self.stages)} ({stage['kind']}, T={timesteps}) epoch {epoch + 1}/{stage['epochs']}"
            stats = run_epoch(step, params, self._batches(index, epoch, stage, batch), optimizer, self.dist,
                              desc=desc, progress=self.progress, grad_clip=self.recipe["train"]["grad_clip"],
                              total=-(-len(self.data.x_train) // batch))
            schedule.step()
            stats.update(stage=index, kind=stage["kind"], epoch=epoch + 1, timesteps=timesteps,
                         lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
            self.history.append(stats)
            if self.progress and self.dist.main:
                tqdm.write(f"{desc}: loss {stats['loss']:.4f}, train accuracy {stats['accuracy']:.4f}, "
                           f"spike rate {stats['spike_rate']:.4f}, {stats['seconds']:.1f} s")
            self._save(model, optimizer, schedule, index, epoch + 1, stage["kind"], time.perf_counter() - start)
        return model

    def _save(self, model, optimizer, schedule, stage: int, epoch: int, kind: str, seconds: float) -> None:
        if self.dist.main:
            save_checkpoint(self.path, {
                "recipe": self.recipe, "stage": stage, "epoch": epoch, "kind": kind,
                "model_spec": model.spec() if isinstance(model, SNNClassifier) else None,
                "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                "schedule_state": schedule.state_dict(), "history": self.history, "info": self.info,
                "seconds": seconds, "done": False})
        self.dist.barrier()

    def _finish(self, model: SNNClassifier, seconds: float) -> dict:
        device = torch.cuda.get_device_name(self.device) if self.device.startswith("cuda") else "cpu"
        summary = {"recipe": self.recipe["name"], "method": self.recipe["method"], "device": device,
                   "world_size": self.dist.world, "dataset": self.data.name, "timesteps": int(model.timesteps),
                   "epochs": sum(int(s["epochs"]) for s in self.stages), "train_seconds": seconds,
                   "history": self.history, "info": self.info}
        if self.dist.main:
            limit = self.recipe["train"]["eval_samples"]
            x, y = self.data.x_test[:limit], self.data.y_test[:limit]
            model.set_fixed_point(False)
            summary["accuracy_float"], _ = evaluate_classifier(model, x, y, self.encoding, model.timesteps,
                                                               device=self.device)
            model.set_fixed_point(True)
            trained_timing = model.timing
            model.timing = "device" if model.chain else trained_timing   # the chip's arithmetic and timing
            summary["accuracy_fixed_point_torch"], summary["spike_rate"] = evaluate_classifier(
                model, x, y, self.encoding, model.timesteps, device=self.device)
            model.timing = trained_timing
            summary["test_samples"] = int(len(x))
            state = load_checkpoint(self.path)
            save_checkpoint(self.path, {**state, "done": True, "summary": _plain(summary)})
            write_json(os.path.join(self.out_dir, SUMMARY), _plain(summary))
        self.dist.barrier()
        return summary


def _plain(value):
    """JSON/weights_only-safe copy: numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
