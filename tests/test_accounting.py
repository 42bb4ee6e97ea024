"""The accounting's numbers, checked against independent counts.

(a) synaptic ops and active updates against brute-force Python loops over every
presynaptic spike and every (output, tap) whose receptive field contains it; (b) synaptic
ops against torch forward hooks on all-ones copies of the layers; (c) energy against the
formula by hand; (d) active/inactive updates on hand-made spikes; (e) ANN MACs by hand.
None of these tests needs Lava (dense layers only appear with hand-made spikes).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from snn2loihi.accounting import (ANN_FP32_HOROWITZ2014, LOIHI1_DAVIES2018, EnergyModel, account,
                                  ann_macs, fanout_map)
from snn2loihi.errors import InputError
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.sim.emulator import Emulator, SimResult

NEURON = NeuronSpec(kind="CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=64)


def _weights(rng, shape, zero_frac=0.3, low=-40, high=90):
    w = rng.integers(low, high, size=shape)
    w[rng.random(shape) < zero_frac] = 0
    return w


def mixed_net(rng) -> Network:
    """Input (2,9,9) → conv pad1 stride2 → conv groups2 dil2 pad2 → conv (2,3) kernel with
    stride (2,1), dilation (1,2), padding (1,2) → pool 2x2 pad1 (one zero tap) → flatten → dense."""
    c1 = ConvLayer((2, 9, 9), _weights(rng, (4, 2, 3, 3)), NEURON, stride=2, padding=1)
    c2 = ConvLayer(c1.out_shape, _weights(rng, (4, 2, 3, 3)), NEURON, padding=2, dilation=2, groups=2)
    c3 = ConvLayer(c2.out_shape, _weights(rng, (6, 4, 2, 3)), NEURON, stride=(2, 1), padding=(1, 2),
                   dilation=(1, 2))
    pool = PoolLayer(c3.out_shape, np.array([[8, 0], [8, 8]]), NEURON, stride=2, padding=1)
    flat = FlattenLayer(pool.out_shape)
    dense = DenseLayer(_weights(rng, (5, flat.out_shape[0])), NEURON)
    return Network([InputLayer((2, 9, 9)), c1, c2, c3, pool, flat, dense])


def random_run(net: Network, rng, n: int, t: int, rate: float = 0.3) -> tuple[np.ndarray, SimResult]:
    """Hand-made binary spikes for the input and every neuron layer (no simulation)."""
    x = (rng.random((n,) + tuple(net.input.shape) + (t,)) < rate).astype(np.uint8)
    spikes = {i: (rng.random((n,) + tuple(layer.out_shape) + (t,)) < rate).astype(np.uint8)
              for i, layer in net.neuron_layers}
    return x, SimResult(spikes=spikes)


def presynaptic(net: Network, x: np.ndarray, result: SimResult) -> dict:
    """Layer index → spikes it receives, (N, *in_shape, T), walked independently of the module."""
    out, cur = {}, x
    for i, layer in enumerate(net.layers):
        if i == 0:
            cur = x if layer.neuron is None else result.spikes[0]
            continue
        if isinstance(layer, FlattenLayer):
            cur = cur.reshape(cur.shape[0], -1, cur.shape[-1])
            continue
        out[i] = cur
        cur = result.spikes[i]
    return out


def brute_force(layer, pre: np.ndarray) -> tuple[int, int, int]:
    """(synops, effective synops, active updates) by explicit loops over every spike.

    For each presynaptic spike (n, c, y, x, t) loop over every output neuron and every
    kernel tap; a connection exists when the tap reads exactly (c, y, x):
    ``oy·sy - py + ky·dy == y`` and ``ox·sx - px + kx·dx == x``, with c in the output
    channel's group (conv) or equal to it (pool). The receiving (n, output, t+1) is active.
    """
    synops = effective = 0
    active = set()
    t_len = pre.shape[-1]
    if isinstance(layer, DenseLayer):
        out_f = layer.weight.shape[0]
        for n, j, t in zip(*np.nonzero(pre)):
            for o in range(out_f):
                synops += 1
                effective += int(layer.weight[o, j] != 0)
                if t + 1 < t_len:
                    active.add((n, o, t + 1))
        return synops, effective, len(active)
    c_out, h_out, w_out = layer.out_shape
    kh, kw = layer.kernel
    (sy, sx), (py, px), (dy, dx) = layer.stride, layer.padding, layer.dilation
    if isinstance(layer, ConvLayer):
        c_in_g = layer.weight.shape[1]
        c_out_g = c_out // layer.groups
    for n, c, y, x, t in zip(*np.nonzero(pre)):
        if isinstance(layer, ConvLayer):
            g = c // c_in_g
            channels = range(g * c_out_g, (g + 1) * c_out_g)
        else:
            channels = [c]
        for co in channels:
            for oy in range(h_out):
                for ox in range(w_out):
                    for ky in range(kh):
                        for kx in range(kw):
                            if oy * sy - py + ky * dy == y and ox * sx - px + kx * dx == x:
                                synops += 1
                                w = (layer.weight[co, c % c_in_g, ky, kx] if isinstance(layer, ConvLayer)
                                     else layer.weight[ky, kx])
                                effective += int(w != 0)
                                if t + 1 < t_len:
                                    active.add((n, co, oy, ox, t + 1))
    return synops, effective, len(active)


def ones_copy(layer, effective: bool = False) -> nn.Module:
    """A torch module with the layer's connectivity and weight 1 per synapse (0 for zero
    weights when ``effective``)."""
    if isinstance(layer, DenseLayer):
        mod = nn.Linear(layer.weight.shape[1], layer.weight.shape[0], bias=False).double()
        w = torch.as_tensor(layer.weight != 0 if effective else np.ones(layer.weight.shape), dtype=torch.float64)
    elif isinstance(layer, ConvLayer):
        mod = nn.Conv2d(layer.in_shape[0], layer.weight.shape[0], layer.kernel, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=False).double()
        w = torch.as_tensor(layer.weight != 0 if effective else np.ones(layer.weight.shape), dtype=torch.float64)
    else:
        c = layer.in_shape[0]
        mod = nn.Conv2d(c, c, layer.kernel, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation, groups=c, bias=False).double()
        k = layer.weight != 0 if effective else np.ones(layer.weight.shape)
        w = torch.as_tensor(np.broadcast_to(k, (c, 1) + k.shape).copy(), dtype=torch.float64)
    with torch.no_grad():
        mod.weight.copy_(w)
    return mod


def hook_synops(layer, pre: np.ndarray, effective: bool = False) -> int:
    """Σ over outputs of the all-ones copy applied to the binary spikes of every step,
    collected by a forward hook."""
    mod = ones_copy(layer, effective)
    total = []
    handle = mod.register_forward_hook(lambda m, inp, out: total.append(float(out.sum())))
    n, t = pre.shape[0], pre.shape[-1]
    s = torch.as_tensor(pre, dtype=torch.float64).movedim(-1, 1)
    s = s.reshape((n * t,) + tuple(pre.shape[1:-1]))
    with torch.no_grad():
        mod(s)
    handle.remove()
    return int(round(sum(total)))


# (a) --------------------------------------------------------------------------------------


def test_synops_and_active_match_brute_force_loops():
    rng = np.random.default_rng(0)
    net = mixed_net(rng)
    x, result = random_run(net, rng, n=2, t=3)
    acc = account(net, x, result)
    pre = presynaptic(net, x, result)
    by_index = {la.index: la for la in acc.layers}
    assert sorted(by_index) == sorted(pre)
    for i, p in pre.items():
        synops, effective, active = brute_force(net.layers[i], p)
        la = by_index[i]
        assert synops > 0 and effective < synops, la.name
        assert (la.synops, la.effective_synops, la.active_updates) == (synops, effective, active), la.name
        assert la.active_updates + la.inactive_updates == 2 * la.neurons * 3
        assert la.spikes == int(result.spikes[i].sum())
    assert acc.input_spikes == int(x.sum())


def test_fanout_map_borders_stride_padding():
    # 1x5 line, kernel 3, padding 1: the border inputs feed 2 outputs, the inner ones 3
    conv = ConvLayer((1, 1, 5), np.ones((1, 1, 1, 3)), NEURON, padding=(0, 1))
    assert fanout_map(conv)[0, 0].tolist() == [2, 3, 3, 3, 2]
    # 1x1 kernel with stride 2: odd positions are never read
    strided = ConvLayer((1, 1, 5), np.ones((1, 1, 1, 1)), NEURON, stride=2)
    assert fanout_map(strided)[0, 0].tolist() == [1, 0, 1, 0, 1]
    # 2x2 pool, stride 2, 5 columns: the last column is dropped
    pool = PoolLayer((2, 2, 5), np.array([[1, 0], [1, 1]]), NEURON, stride=2)
    assert fanout_map(pool)[1].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    assert fanout_map(pool, effective=True)[1].tolist() == [[1, 0, 1, 0, 0], [1, 1, 1, 1, 0]]
    dense = DenseLayer(np.array([[1, 0, 2], [0, 0, 3]]), NEURON)
    assert fanout_map(dense).tolist() == [2, 2, 2]
    assert fanout_map(dense, effective=True).tolist() == [1, 0, 2]


# (b) --------------------------------------------------------------------------------------


def test_synops_match_torch_hooks_on_hand_made_spikes():
    rng = np.random.default_rng(1)
    net = mixed_net(rng)
    x, result = random_run(net, rng, n=3, t=5, rate=0.2)
    acc = account(net, x, result)
    pre = presynaptic(net, x, result)
    for la in acc.layers:
        layer = net.layers[la.index]
        assert la.synops == hook_synops(layer, pre[la.index]), la.name
        assert la.effective_synops == hook_synops(layer, pre[la.index], effective=True), la.name


def test_synops_match_torch_hooks_on_emulator_spikes():
    """A conv/pool network (no dense layer, so no Lava) simulated by the emulator."""
    rng = np.random.default_rng(2)
    c1 = ConvLayer((2, 9, 9), _weights(rng, (4, 2, 3, 3), low=-10, high=60), NEURON, stride=2, padding=1)
    c2 = ConvLayer(c1.out_shape, _weights(rng, (4, 2, 3, 3), low=-10, high=60), NEURON, padding=2,
                   dilation=2, groups=2)
    pool = PoolLayer(c2.out_shape, np.full((2, 2), 40), NEURON, stride=2, padding=1)
    net = Network([InputLayer((2, 9, 9)), c1, c2, pool])
    t = 8 + net.latency
    x = (rng.random((4, 2, 9, 9, t)) < 0.4).astype(np.uint8)
    x[..., -net.latency:] = 0
    result = Emulator(net).run(x, record_all=True)
    acc = account(net, x, result)
    pre = presynaptic(net, x, result)
    for la in acc.layers:
        assert la.spikes > 0, f"{la.name} is silent: the test would prove little"
        layer = net.layers[la.index]
        assert la.synops == hook_synops(layer, pre[la.index]), la.name
        assert la.effective_synops == hook_synops(layer, pre[la.index], effective=True), la.name
    # the pool layer once more against the explicit loops, on emulator spikes
    synops, effective, active = brute_force(pool, pre[3])
    assert (acc.layers[-1].synops, acc.layers[-1].effective_synops, acc.layers[-1].active_updates) == (
        synops, effective, active)


# (c) --------------------------------------------------------------------------------------


def tiny_dense_run():
    """Input (2,) → dense 2→3; N = 2 samples, T = 3 steps, spikes written by hand."""
    net = Network([InputLayer((2,)), DenseLayer(np.array([[2, 0], [4, 6], [0, 0]]), NEURON)])
    x = np.zeros((2, 2, 3), dtype=np.uint8)
    x[0, 0, 0] = 1   # sample 0, input 0 at t=0 → 3 outputs active at t=1
    x[0, 1, 1] = 1   # sample 0, input 1 at t=1 → 3 outputs active at t=2
    x[1, 0, 2] = 1   # sample 1, input 0 at t=2 (last step) → nothing active in the window
    out = np.zeros((2, 3, 3), dtype=np.uint8)
    out[0, 1, 2] = 1
    return net, x, SimResult(spikes={1: out})


def test_energy_equals_formula_by_hand():
    net, x, result = tiny_dense_run()
    acc = account(net, x, result)
    (la,) = acc.layers
    # 3 input spikes x fan-out 3 = 9 synops; effective: input 0 has 2 non-zero weights, input 1 has 1
    assert (la.synops, la.effective_synops) == (9, 2 * 2 + 1 * 1)
    assert (la.active_updates, la.inactive_updates) == (6, 2 * 3 * 3 - 6)
    assert la.spikes == 1 and la.firing_rate == pytest.approx(1 / (2 * 3 * 3))
    # per sample: 4.5 synops, 3 active, 6 inactive → 23.6·4.5 + 81·3 + 52·6 = 661.2 pJ
    assert la.energy_nj == pytest.approx(0.6612)
    assert acc.energy_nj == pytest.approx(0.6612)
    assert la.energy_breakdown_nj == pytest.approx({"synop": 0.1062, "active_update": 0.243,
                                                    "inactive_update": 0.312})
    # ANN: 2·3 MACs x 4.6 pJ = 27.6 pJ
    assert la.ann_macs == 6 and acc.ann_energy_nj == pytest.approx(0.0276)
    assert acc.ratio == pytest.approx(0.0276 / 0.6612)
    d = json.loads(json.dumps(acc.to_dict()))
    assert d["energy"]["total"]["snn_energy_nj"] == pytest.approx(0.6612)
    assert d["energy"]["ann_baseline"]["ann_energy_nj"] == pytest.approx(0.0276)
    assert d["energy"]["ratio"] == pytest.approx(0.0276 / 0.6612)
    assert d["energy"]["constants"]["snn"]["pj_per_op"] == {"synop": 23.6, "active_update": 81.0,
                                                            "inactive_update": 52.0}
    assert "Davies" in d["energy"]["constants"]["snn"]["source"]
    assert d["energy"]["constants"]["ann"]["pj_per_op"] == {"mac": 4.6, "ac": 0.9}
    # compute-only (papers' formula): the only synapse layer is layer 1, priced as its 6 MACs
    assert la.compute_energy_nj == la.compute_energy_effective_nj == pytest.approx(0.0276)
    assert d["energy"]["compute_only"]["energy_nj"] == pytest.approx(0.0276)
    assert "Horowitz" in d["energy"]["constants"]["ann"]["source"]
    assert d["layers"][0]["synops_per_sample"] == 4.5 and d["total"]["input_spikes"] == 3


def test_custom_energy_model_prices_other_ops():
    net, x, result = tiny_dense_run()
    model = EnergyModel("TEST", {"synop_effective": 10.0, "spike": 1000.0}, source="by hand")
    acc = account(net, x, result, snn_model=model)
    # per sample: 2.5 effective synops x 10 pJ + 0.5 spikes x 1000 pJ = 525 pJ
    assert acc.energy_nj == pytest.approx(0.525)
    with pytest.raises(ValueError, match="unknown operations"):
        EnergyModel("BAD", {"flop": 1.0}, source="")


# (d) --------------------------------------------------------------------------------------


def test_active_inactive_hand_made_conv():
    # 1x5 line, kernel 3 with padding 1: output o reads inputs o-1, o, o+1
    net = Network([InputLayer((1, 1, 5)), ConvLayer((1, 1, 5), np.array([[[[1, 0, 1]]]]), NEURON,
                                                    padding=(0, 1))])
    x = np.zeros((1, 1, 1, 5, 5), dtype=np.uint8)
    x[0, 0, 0, 0, 0] = 1  # t=0, input 0 → outputs {0, 1} active at t=1
    x[0, 0, 0, 3, 2] = 1  # t=2, input 3 → outputs {2, 3, 4} at t=3
    x[0, 0, 0, 4, 2] = 1  # t=2, input 4 → outputs {3, 4} at t=3 (overlap counted once)
    x[0, 0, 0, 2, 4] = 1  # t=4, the last step → arrives after the window
    result = SimResult(spikes={1: np.zeros((1, 1, 1, 5, 5), dtype=np.uint8)})
    (la,) = account(net, x, result).layers
    assert la.active_updates == 2 + 3
    assert la.inactive_updates == 5 * 5 - 5
    assert la.neuron_updates_per_sample == 25
    assert la.synops == 2 + 3 + 2 + 3  # fan-outs [2, 3, 3, 3, 2] at inputs 0, 3, 4, 2
    # effective: the middle tap is 0, so output o reads only o-1 and o+1
    assert la.effective_synops == 1 + 2 + 1 + 2


def test_active_inactive_input_neuron_and_dense():
    net = Network([InputLayer((3,), neuron=NEURON), DenseLayer(np.array([[1, 2, 3], [4, 5, 6]]), NEURON)])
    x = np.zeros((1, 3, 4), dtype=np.int64)
    x[0, 0, :2] = 100         # driven at t=0, 1
    x[0, 2, 2:] = [-5, 90]    # driven at t=2, 3 (a negative input is still an input)
    s_in = np.zeros((1, 3, 4), dtype=np.uint8)
    s_in[0, 0, 0] = s_in[0, 0, 1] = 1  # → dense active at t=1 and t=2
    s_in[0, 2, 3] = 1                  # last step → nothing
    result = SimResult(spikes={0: s_in, 1: np.zeros((1, 2, 4), dtype=np.uint8)})
    acc = account(net, x, result)
    inp, dense = acc.layers
    assert (inp.name, inp.active_updates, inp.inactive_updates, inp.synops) == ("0:input", 4, 8, 0)
    assert inp.spikes == 3 and inp.ann_macs == 0
    assert (dense.active_updates, dense.inactive_updates) == (4, 4)
    assert dense.synops == 3 * 2
    assert acc.input_spikes == 0  # non-binary input drives the input neuron; its spikes are layer 0


# (e) --------------------------------------------------------------------------------------


def test_ann_macs_by_hand():
    conv = ConvLayer((1, 8, 8), np.ones((16, 1, 3, 3)), NEURON, padding=1)
    pool = PoolLayer(conv.out_shape, np.ones((2, 2)), NEURON, stride=2)
    grouped = ConvLayer(pool.out_shape, np.ones((8, 4, 3, 3)), NEURON, padding=1, groups=4)
    flat = FlattenLayer(grouped.out_shape)
    dense = DenseLayer(np.ones((10, 128)), NEURON)
    net = Network([InputLayer((1, 8, 8)), conv, pool, grouped, flat, dense])
    assert ann_macs(conv) == 9 * 1 * 16 * 64
    assert ann_macs(pool) == 4 * 16 * 16
    assert ann_macs(grouped) == 9 * 4 * 8 * 16
    assert ann_macs(dense) == 128 * 10
    assert ann_macs(net.layers[0]) == ann_macs(flat) == 0
    x = np.zeros((1, 1, 8, 8, 2), dtype=np.uint8)
    result = SimResult(spikes={i: np.zeros((1,) + tuple(l.out_shape) + (2,), dtype=np.uint8)
                               for i, l in net.neuron_layers})
    acc = account(net, x, result)
    total = 9216 + 1024 + 4608 + 1280
    assert acc.total()["ann_macs"] == total
    assert acc.ann_energy_nj == pytest.approx(total * 4.6e-3)
    # silent network: energy is the inactive-update floor, 52 pJ x neurons x T
    neurons = 16 * 64 + 16 * 16 + 8 * 16 + 10
    assert acc.energy_nj == pytest.approx(52e-3 * neurons * 2)


# reporting ----------------------------------------------------------------------------------


def test_to_dict_table_and_plot(tmp_path):
    rng = np.random.default_rng(3)
    net = mixed_net(rng)
    x, result = random_run(net, rng, n=2, t=4)
    acc = account(net, x, result, snn_model=LOIHI1_DAVIES2018, ann_model=ANN_FP32_HOROWITZ2014)
    d = json.loads(json.dumps(acc.to_dict()))
    assert {"layers", "total", "energy", "conventions", "n_samples", "timesteps"} <= set(d)
    assert {"per_layer", "total", "ann_baseline", "ratio", "constants", "unit"} <= set(d["energy"])
    assert [layer["name"] for layer in d["layers"]] == ["1:conv", "2:conv", "3:conv", "4:pool", "6:dense"]
    assert {"fan_out", "active_inactive", "timesteps", "energy"} <= set(d["conventions"])
    assert "pre-silicon" in d["conventions"]["energy"] and "latency" in d["conventions"]["timesteps"]
    assert d["total"]["synops"] == sum(layer["synops"] for layer in d["layers"])
    assert d["total"]["energy_nj"] == pytest.approx(sum(e["snn_energy_nj"] for e in d["energy"]["per_layer"]))
    table = acc.format_table()
    assert "6:dense" in table and "Davies" in table and "Horowitz" in table and "pre-silicon" in table

    from snn2loihi.report_plots import plot_report, sample_spikes
    spikes = sample_spikes(net, result, sample=1, x=x)
    assert list(spikes) == ["0:input", "1:conv", "2:conv", "3:conv", "4:pool", "6:dense"]
    path = tmp_path / "out" / "report.png"
    assert plot_report(acc, spikes, str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(path.parent) == ["report.png"]


def test_rejects_bad_inputs():
    net, x, result = tiny_dense_run()
    with pytest.raises(InputError, match="binary"):
        account(net, x * 2, result)
    with pytest.raises(InputError, match="record_all"):
        account(net, x, SimResult(spikes={}))
    with pytest.raises(InputError, match="expected"):
        account(net, x[..., :2], result)
