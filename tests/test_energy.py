"""Energy reports: the compute-only formula and synop counts against an independent count
made with torch forward hooks (as SpikingJelly's and syops-counter's counters work), the
presets and their provenance, measured energy, and the energy/report commands."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from snn2loihi.accounting import (ANN_FP16_HOROWITZ2014, ANN_INT8_HOROWITZ2014, LOIHI1_DAVIES2018,
                                  LOIHI1_DAVIES2018_ROUTING, LOIHI2_MEASURED_ONLY, account, measured_energy)
from snn2loihi.cli import main
from snn2loihi.errors import InputError
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.netx import write_network
from snn2loihi.planning import plan_network
from snn2loihi.sim.emulator import Emulator

SOFT = NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=64)


def spiking_net(rng) -> Network:
    """conv (stride 2, padding) → pool → conv (groups 2) → flatten → dense → dense, with zero
    weights, strong enough to spike at every layer."""
    c1 = ConvLayer((2, 10, 10), rng.integers(0, 40, (4, 2, 3, 3)) * 2 * (rng.random((4, 2, 3, 3)) > 0.3), SOFT,
                   stride=2, padding=1)
    pool = PoolLayer(c1.out_shape, np.array([[20, 0], [20, 20]]), SOFT)
    c2 = ConvLayer(pool.out_shape, rng.integers(0, 40, (6, 2, 3, 3)) * 2, SOFT, groups=2, padding=1)
    flat = FlattenLayer(c2.out_shape)
    d1 = DenseLayer(rng.integers(-10, 40, (12, 24)) * 2 * (rng.random((12, 24)) > 0.2), SOFT)
    d2 = DenseLayer(rng.integers(-10, 60, (5, 12)) * 2, SOFT)
    return Network([InputLayer((2, 10, 10)), c1, pool, c2, flat, d1, d2])


def torch_copy(layer, weight: np.ndarray) -> nn.Module:
    """The layer as a torch module with the given weights (no bias)."""
    if isinstance(layer, DenseLayer):
        mod = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    elif isinstance(layer, ConvLayer):
        mod = nn.Conv2d(layer.in_shape[0], weight.shape[0], layer.kernel, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation, groups=layer.groups, bias=False)
    else:
        c = layer.in_shape[0]
        mod = nn.Conv2d(c, c, layer.kernel, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                        groups=c, bias=False)
        weight = np.broadcast_to(weight, (c, 1) + weight.shape)
    mod = mod.double()
    with torch.no_grad():
        mod.weight.copy_(torch.as_tensor(np.ascontiguousarray(weight), dtype=torch.float64))
    return mod


def hook_counts(net: Network, x: np.ndarray, result) -> dict:
    """Per synapse layer: (MACs per sample, SOPs, effective SOPs), by forward hooks.

    MACs: a hook on the torch copy reads the output size (FLOPs = out elements x fan-in,
    the syops/SpikingJelly FLOP rule). SOPs: the all-ones copy applied to the presynaptic
    spikes of every step, summed (= Σ spikes x fan-out). Effective: a copy whose weights
    are 1 where Lava's weights are non-zero (for dense: netx's rescale and Lava's
    clip/truncation, taken here from Lava's own utilities)."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    from snn2loihi.lava_imports import quiet_import

    optimize = quiet_import("lava.lib.dl.netx.utils").optimize_weight_bits
    out, pre = {}, x
    n, t = x.shape[0], x.shape[-1]
    for i, layer in enumerate(net.layers):
        if i == 0:
            continue
        if isinstance(layer, FlattenLayer):
            pre = pre.reshape(n, -1, t)
            continue
        w = np.asarray(layer.weight)
        if isinstance(layer, DenseLayer):
            scaled, bits, _, _ = optimize(w)
            mode = determine_sign_mode(scaled)
            lava_w = truncate_weights(clip_weights(scaled, mode, num_bits=8), mode, bits)
        else:
            lava_w = w
        macs = []
        mod = torch_copy(layer, np.ones_like(w, dtype=np.float64))
        fan_in = int(np.prod(mod.weight.shape[1:]))
        handle = mod.register_forward_hook(lambda m, inp, o: macs.append(o[0].numel() * fan_in))
        sums = []
        sop_hook = mod.register_forward_hook(lambda m, inp, o: sums.append(float(o.sum())))
        s = torch.as_tensor(pre, dtype=torch.float64).movedim(-1, 1).reshape((n * t,) + tuple(pre.shape[1:-1]))
        with torch.no_grad():
            mod(s)
        handle.remove()
        sop_hook.remove()
        eff_mod = torch_copy(layer, (np.asarray(lava_w) != 0).astype(np.float64))
        with torch.no_grad():
            eff = float(eff_mod(s).sum())
        out[i] = (macs[0], int(round(sums[0])), int(round(eff)))
        pre = result.spikes[i]
    return out


def test_synops_and_compute_only_energy_equal_hook_counts():
    rng = np.random.default_rng(0)
    net = spiking_net(rng)
    x = (rng.random((6, 2, 10, 10, 12)) < 0.4).astype(np.uint8)
    x[..., -net.latency:] = 0
    result = Emulator(net).run(x, record_all=True)
    acc = account(net, x, result, ann_model=ANN_FP16_HOROWITZ2014)
    counts = hook_counts(net, x, result)
    assert [la.index for la in acc.layers] == sorted(counts)
    for la in acc.layers:
        assert la.spikes > 0, la.name
        macs, sops, eff = counts[la.index]
        assert (la.ann_macs, la.synops, la.effective_synops) == (macs, sops, eff), la.name
    assert any(la.effective_synops < la.synops for la in acc.layers)
    # E_cmp = E_MAC · FLOPs_1 + E_AC · Σ_{l≥2} SOP_l / N with the FP16 preset: 1.5 / 0.4 pJ
    first, *rest = sorted(counts)
    expected = 1.5 * counts[first][0] + 0.4 * sum(counts[i][1] for i in rest) / 6
    assert acc.compute_energy_nj == pytest.approx(expected * 1e-3)
    assert acc.compute_energy_effective_nj == pytest.approx(
        (1.5 * counts[first][0] + 0.4 * sum(counts[i][2] for i in rest) / 6) * 1e-3)
    assert acc.ann_energy_nj == pytest.approx(1.5e-3 * sum(c[0] for c in counts.values()))
    assert acc.to_dict()["energy"]["compute_only"]["formula"] == "1.5 pJ x FLOPs_1 + 0.4 pJ x synops of later layers"


def test_presets_routing_and_measured_only():
    rng = np.random.default_rng(1)
    net = spiking_net(rng)
    x = (rng.random((3, 2, 10, 10, 10)) < 0.4).astype(np.uint8)
    result = Emulator(net).run(x, record_all=True)
    plan = plan_network(net, "loihi1")
    base = account(net, x, result, plan=plan)
    routed = account(net, x, result, snn_model=LOIHI1_DAVIES2018_ROUTING, plan=plan)
    messages = sum(la.spike_messages for la in base.layers)
    assert messages > 0 and base.total()["spike_messages"] == messages
    assert routed.energy_nj == pytest.approx(base.energy_nj + 1.7e-3 * messages / 3)
    loihi2 = account(net, x, result, snn_model=LOIHI2_MEASURED_ONLY, ann_model=ANN_INT8_HOROWITZ2014)
    assert loihi2.energy_nj is None and loihi2.ratio is None and all(la.energy_nj is None for la in loihi2.layers)
    assert loihi2.compute_energy_nj == pytest.approx(account(net, x, result, ann_model=ANN_INT8_HOROWITZ2014)
                                                     .compute_energy_nj) and loihi2.compute_energy_nj > 0
    d = json.loads(json.dumps(loihi2.to_dict()))
    assert d["energy"]["total"]["snn_energy_nj"] is None and d["energy"]["event_model"]["measured_only"] is True
    assert "no per-operation energies" in d["energy"]["constants"]["snn"]["source"]
    table = loihi2.format_table()
    assert "E_SNN = n/a  [LOIHI2_MEASURED_ONLY]" in table and "0.23 pJ per MAC" in table
    assert base.to_dict()["energy"]["constants"]["snn"] == LOIHI1_DAVIES2018.to_dict()


def test_measured_energy_by_hand():
    # 1.2 W total, 0.8 W static, 10 µs per step, 20 steps: 1.2 x 2e-4 s = 240 µJ; dynamic 80 µJ
    m = measured_energy(1.2, 0.8, 10e-6, 20)
    assert m["total_energy_nj"] == pytest.approx(240_000) and m["dynamic_energy_nj"] == pytest.approx(80_000)
    with pytest.raises(InputError, match="static <= total"):
        measured_energy(0.5, 0.8, 1e-5, 20)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(2)
    net = spiking_net(rng)
    path, xs, ys = tmp_path / "n.net", tmp_path / "x.npy", tmp_path / "y.npy"
    write_network(net, path)
    np.save(xs, (rng.random((4, 2, 10, 10, 8)) < 0.4).astype(np.uint8))
    np.save(ys, np.array([0, 1, 2, 3]))
    return path, xs, ys


def test_cli_energy_folder_backends_and_presets(files, tmp_path, capsys):
    path, xs, _ = files
    out = tmp_path / "energy"
    assert main(["energy", str(path), "--input", str(xs), "--out", str(out), "--json", "--samples", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "energy.json").read_text())
    assert printed == saved and saved["n_samples"] == 2 and saved["chip"] == "loihi1"
    assert sorted(os.listdir(out)) == ["energy.json", "energy.png", "firing_rate.png", "raster.png", "synops.png"]
    assert all((out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in os.listdir(out) if f.endswith(".png"))
    # the same two samples counted from a Lava CPU run give the same numbers (spike-identical backends)
    assert main(["energy", str(path), "--input", str(xs), "--json", "--samples", "2", "--backend", "lava"]) == 0
    lava = json.loads(capsys.readouterr().out)
    assert lava["backend"] == "lava" and lava["layers"] == saved["layers"] and lava["total"] == saved["total"]
    assert main(["energy", str(path), "--input", str(xs), "--preset", "loihi2", "--ann", "int8"]) == 0
    table = capsys.readouterr().out
    assert "E_SNN = n/a" in table and "Intel" in table and "INT8" in table
    assert main(["energy", str(path), "--input", str(xs), "--samples", "0"]) == 2


def test_cli_report(files, tmp_path, capsys):
    path, xs, ys = files
    out = tmp_path / "report"
    assert main(["report", str(path), "--input", str(xs), "--labels", str(ys), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "loihi1:" in text and "loihi2:" in text and "Reset comparison" in text
    d = json.loads((out / "report.json").read_text())
    assert d["plan"]["loihi1"]["cores"] >= 5 and d["plan"]["loihi2"]["chip"]["name"] == "loihi2"
    assert [r["accuracy"] is not None for r in d["resets"]["variants"]] == [True, True, True]
    assert d["energy"]["layers"][0]["name"] == "1:conv"
    assert {"report.json", "report.txt", "report.png", "energy.png", "raster.png"} <= set(os.listdir(out))
