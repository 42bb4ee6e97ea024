"""Checkpoints: atomic, code-free, rebuildable; resume is exact; NaN stops keep the last good one."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

from snn2loihi.blocks.network import SpikingNetwork
from snn2loihi.blocks.soft_lif import Conv, Flatten, Pool
from snn2loihi.cli import main as cli_main
from snn2loihi.errors import CheckpointError, TrainingError
from snn2loihi.training import trainer as trainer_module
from snn2loihi.training.checkpoint import load_checkpoint, save_checkpoint
from snn2loihi.training.model import SNNClassifier
from snn2loihi.training.modules import BatchNormConv, Encoder, Readout
from snn2loihi.training.spec import neuron_kwargs
from snn2loihi.training.stbp import NeuNorm
from snn2loihi.training.trainer import Trainer

RECIPE = {
    "name": "tiny", "method": "tet", "seed": 5,
    "data": {"dataset": "digits", "input": "analog", "train_subset": 96, "test_subset": 32},
    "model": {"builder": "vgg", "args": {"channels": [4, "P", 8], "pool": "stride", "dropout": 0.2},
              "neuron": {"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard",
                         "surrogate": {"name": "Triangle", "gamma": 1.0}}},
    "train": {"batch_size": 32, "lr": 0.01, "stages": [{"timesteps": 2, "epochs": 2}, {"timesteps": 3, "epochs": 1}]},
}


def test_save_is_atomic_and_load_refuses_code(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(str(path), {"model_state": {"w": torch.arange(3.0)}, "note": "x"})
    assert os.listdir(tmp_path) == ["c.pt"]                     # no temporary file left behind
    state = load_checkpoint(str(path))
    assert state["note"] == "x" and torch.equal(state["model_state"]["w"], torch.arange(3.0))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="c.pt: not a readable checkpoint"):
        load_checkpoint(str(path))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": "snn2loihi-checkpoint", "version": 1, "x": Evil()}, tmp_path / "evil.pt",
               pickle_protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an snn2loihi-checkpoint file"):
        load_checkpoint(str(tmp_path / "other.pt"))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(str(tmp_path / "missing.pt"))


def test_architecture_round_trips_through_plain_data():
    torch.manual_seed(0)
    p = neuron_kwargs({"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard", "scale": 128,
                       "surrogate": {"name": "Rectangular", "width": 0.8}, "dropout": {"p": 0.1, "per_step": True}})
    soft = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    encoder = Encoder(p, (1, 8, 8), 3, batchnorm=True)
    net = SpikingNetwork(encoder.out_shape, [BatchNormConv(p, 3, 4, 3, padding=1), NeuNorm((4, 8, 8), 0.7),
                                             Pool(soft, 2), Conv(p, 4, 4, 3, padding=1, stride=2), Flatten(),
                                             Readout(16, 3)])
    net.blocks[3].neuron.v_init = torch.full((4,), 0.25)
    model = SNNClassifier(net, 3, encoder=encoder, timesteps=5)
    model.train()
    model(torch.rand(8, 1, 8, 8))                                 # move the BN running statistics
    spec = json.loads(json.dumps(model.spec()))                   # plain data only
    rebuilt = SNNClassifier.from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x)[0], model(x)[0], rtol=0, atol=0)
    assert rebuilt.network.blocks[1].neuron.surrogate == model.network.blocks[1].neuron.surrogate
    assert rebuilt.network.blocks[1].neuron.drop.p == 0.1


def _final(path):
    state = load_checkpoint(str(path))
    return state["model_state"], [{k: v for k, v in h.items() if k != "seconds"} for h in state["history"]]


@pytest.mark.parametrize("stop_after", [1, 2])   # mid-stage, and at the stage boundary (T changes next)
def test_resume_continues_exactly(tmp_path, monkeypatch, stop_after):
    Trainer(RECIPE, str(tmp_path / "full"), progress=False).run()
    saves = {"n": 0}
    original = Trainer._save

    def crash_after(self, *args, **kwargs):
        original(self, *args, **kwargs)
        saves["n"] += 1
        if saves["n"] == stop_after:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(Trainer, "_save", crash_after)
    with pytest.raises(KeyboardInterrupt):
        Trainer(RECIPE, str(tmp_path / "cut"), progress=False).run()
    assert load_checkpoint(str(tmp_path / "cut" / "checkpoint.pt"))["epoch"] == stop_after
    monkeypatch.setattr(Trainer, "_save", original)
    summary = Trainer(RECIPE, str(tmp_path / "cut"), progress=False).run(resume=True)
    full_state, full_history = _final(tmp_path / "full" / "checkpoint.pt")
    cut_state, cut_history = _final(tmp_path / "cut" / "checkpoint.pt")
    assert cut_history == full_history and len(cut_history) == 3
    for key in full_state:
        assert torch.equal(full_state[key], cut_state[key]), key
    assert summary["timesteps"] == 3 and 0 <= summary["accuracy_fixed_point_torch"] <= 1


def test_resume_refuses_another_recipe(tmp_path):
    Trainer({**RECIPE, "train": {**RECIPE["train"], "stages": [{"timesteps": 2, "epochs": 1}]}},
            str(tmp_path), progress=False).run()
    with pytest.raises(CheckpointError, match="different recipe"):
        Trainer(RECIPE, str(tmp_path), progress=False).run(resume=True)


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = trainer_module.objective

    def poisoned(recipe, classes):
        loss = real(recipe, classes)

        def wrapped(out, y):
            calls["n"] += 1
            return loss(out, y) * (float("nan") if calls["n"] > 4 else 1.0)   # epoch 2, batch 2
        return wrapped

    monkeypatch.setattr(trainer_module, "objective", poisoned)
    with pytest.raises(TrainingError, match="non-finite at batch 2"):
        Trainer(RECIPE, str(tmp_path), progress=False).run()
    state = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert state["epoch"] == 1 and not state["done"]
    assert all(bool(torch.isfinite(v).all()) for v in state["model_state"].values() if v.is_floating_point())


def test_cli_train_export_simulate(tmp_path, capsys):
    import yaml

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "train": {**RECIPE["train"], "stages": [{"timesteps": 2, "epochs": 1}]}}))
    out = tmp_path / "run"
    assert cli_main(["train", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1
    net = tmp_path / "tiny.net"
    assert cli_main(["export", str(out / "checkpoint.pt"), "--out", str(net), "--inputs", "4"]) == 0
    x = np.load(tmp_path / "tiny.inputs.npy")
    assert x.shape == (4, 4, 4, 4, 2) and x.dtype.kind == "i"     # stride-2 encoder currents, T = 2
    assert cli_main(["simulate", str(net), "--input", str(tmp_path / "tiny.inputs.npy"),
                     "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape[0] == 4
    assert cli_main(["export", str(tmp_path / "nope.pt"), "--out", str(net)]) == 2
    assert "nope.pt: no such checkpoint file" in capsys.readouterr().err
