"""Multi-process training: ``torchrun`` with 2 CPU processes (gloo) equals one process.

Each rank takes half of every global batch and scales its loss so that DDP's gradient
average is the whole batch's gradient; neuron states start from rest in every forward
call. Without dropout the two runs therefore follow the same trajectory up to float32
summation order.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from snn2loihi.training.checkpoint import load_checkpoint
from snn2loihi.training.trainer import Trainer

RECIPE = {
    "name": "ddp", "method": "tet", "seed": 3,
    "data": {"dataset": "digits", "input": "poisson", "train_subset": 256, "test_subset": 32},
    "model": {"builder": "vgg", "args": {"channels": [6, "P"], "pool": "stride"},
              "neuron": {"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard",
                         "surrogate": {"name": "Triangle", "gamma": 1.0}}},
    "train": {"batch_size": 64, "lr": 0.01, "stages": [{"timesteps": 3, "epochs": 2}]},
}


def _torchrun() -> list:
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def test_two_gloo_processes_match_one_process(tmp_path):
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    single = Trainer(yaml.safe_load(recipe.read_text()), str(tmp_path / "single"), progress=False).run()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(_torchrun() + ["--standalone", "--nproc_per_node=2", "-m", "snn2loihi.cli", "train",
                                         "--recipe", str(recipe), "--out", str(tmp_path / "multi"), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_checkpoint(str(tmp_path / "single" / "checkpoint.pt"))
    b = load_checkpoint(str(tmp_path / "multi" / "checkpoint.pt"))
    assert b["summary"]["world_size"] == 2 and single["world_size"] == 1
    for key, value in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert a["history"][-1]["samples"] == b["history"][-1]["samples"] == 256
    assert b["history"][-1]["loss"] == pytest.approx(a["history"][-1]["loss"], rel=1e-5)
    assert a["history"][0]["loss"] != a["history"][-1]["loss"]    # it trained
