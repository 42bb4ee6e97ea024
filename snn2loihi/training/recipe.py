"""Recipes: one YAML file per method × dataset that fully describes a training run.

Example (``models/recipes/fmnist_tet.yaml``)::

    name: fmnist_tet
    method: tet                  # tet | sdt | stbp | hybrid
    seed: 0
    method_args: {lambda: 0.05, phi: 1.0}
    data: {dataset: fashion-mnist, input: analog}
    model:
      builder: vggsnn            # a builder in models/snn.py
      args: {width: 0.25}
      neuron: {threshold: 1.0, voltage_decay: 0.5, reset: hard,
               surrogate: {name: Triangle, gamma: 1.0}}
    train:
      batch_size: 64
      optimizer: adam            # adam | sgd (momentum)
      lr: 0.001
      schedule: cosine           # cosine | step (×0.1 at 50 % and 75 %) | constant
      timing: aligned            # aligned | device (train with the chip's per-layer delay)
      stages:                    # time-inheritance training: T = 2, then T = 4
        - {timesteps: 2, epochs: 6}
        - {timesteps: 4, epochs: 2, lr: 0.0003}

A hybrid recipe adds ``ann: {builder, args, epochs, lr, ...}`` (the ANN trained first) and
``method_args`` ``{kappa, conversion_timesteps, calibration_samples, alpha, beta}``.
:func:`normalize` fills the defaults, checks the values and returns plain data, which is
what checkpoints store.
"""
from __future__ import annotations

import copy
import os

from ..errors import TrainingError

METHODS = ("tet", "sdt", "stbp", "hybrid")
TRAIN_DEFAULTS = {"batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9,
                  "schedule": "cosine", "grad_clip": None, "eval_samples": None, "timing": "aligned"}
METHOD_DEFAULTS = {"tet": {"lambda": 0.05, "phi": 1.0}, "sdt": {}, "stbp": {},
                   "hybrid": {"kappa": 0.7, "conversion_timesteps": 100, "calibration_samples": 512,
                              "alpha": 0.3, "beta": 0.01}}


def load_recipe(path: str) -> dict:
    """Read and normalise a YAML recipe."""
    import yaml

    if not os.path.isfile(path):
        raise TrainingError(f"{path}: no such recipe file")
    with open(path) as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as err:
            raise TrainingError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise TrainingError(f"{path}: a recipe is a mapping of name, method, data, model, train")
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return normalize(raw)


def normalize(raw: dict) -> dict:
    """Defaults filled in and values checked; raises TrainingError naming the bad field."""
    recipe = copy.deepcopy(raw)
    method = recipe.get("method")
    if method not in METHODS:
        raise TrainingError(f"recipe {recipe.get('name')!r}: method must be one of {METHODS}, found {method!r}")
    recipe.setdefault("name", method)
    recipe.setdefault("seed", 0)
    recipe.setdefault("device", "cpu")
    recipe["method_args"] = {**METHOD_DEFAULTS[method], **(recipe.get("method_args") or {})}
    recipe["data"] = {"dataset": "digits", "input": "analog", **(recipe.get("data") or {})}
    if method == "hybrid":  # the SNN is the converted ANN
        recipe.setdefault("model", {"builder": "converted"})
    model = recipe.get("model")
    if not isinstance(model, dict) or "builder" not in model:
        raise TrainingError(f"recipe {recipe['name']!r}: model.builder is required")
    model.setdefault("args", {})
    model.setdefault("neuron", {})
    train = {**TRAIN_DEFAULTS, **(recipe.get("train") or {})}
    stages = train.get("stages")
    if not stages:
        raise TrainingError(f"recipe {recipe['name']!r}: train.stages needs at least one {{timesteps, epochs}}")
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or int(stage.get("timesteps", 0)) < 1 or int(stage.get("epochs", -1)) < 0:
            raise TrainingError(f"recipe {recipe['name']!r}: train.stages[{i}] needs timesteps >= 1 and epochs >= 0")
    if (train["optimizer"] not in ("adam", "sgd") or train["schedule"] not in ("cosine", "step", "constant")
            or train["timing"] not in ("aligned", "device")):
        raise TrainingError(f"recipe {recipe['name']!r}: optimizer adam|sgd, schedule cosine|step|constant, "
                            f"timing aligned|device")
    for key in ("lr", "weight_decay", "momentum"):
        train[key] = float(train[key])
    recipe["train"] = train
    if method == "hybrid":
        ann = recipe.get("ann")
        if not isinstance(ann, dict) or "builder" not in ann:
            raise TrainingError(f"recipe {recipe['name']!r}: a hybrid recipe needs ann.builder (the ANN to convert)")
        recipe["ann"] = {"args": {}, "epochs": 5, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0,
                         "schedule": "cosine", **ann}
    return recipe


def stages(recipe: dict) -> list[dict]:
    """The run as a list of stages ``{kind: ann|snn, epochs, lr, timesteps, ...}``."""
    train = recipe["train"]
    common = {k: train[k] for k in ("optimizer", "lr", "weight_decay", "momentum", "schedule")}
    out = []
    if recipe["method"] == "hybrid":
        ann = recipe["ann"]
        out.append({**common, **{k: ann[k] for k in ("epochs", "lr", "optimizer", "weight_decay", "schedule")},
                    "kind": "ann", "timesteps": 0, "lr": float(ann["lr"])})
    for stage in train["stages"]:
        out.append({**common, **stage, "kind": "snn", "lr": float(stage.get("lr", common["lr"]))})
    return out
