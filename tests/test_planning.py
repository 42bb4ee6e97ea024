"""Core mappings checked against hand computations and brute-force loops.

The synapse-memory encoding is nengo-loihi's (``SynapseConfig.bits_per_axon``): the
synapses of one axon on one core are stored in entries of at most 64, each entry
``ceil64(n · b + 10)`` bits. Numbers below are worked out by hand from that rule.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from snn2loihi.accounting import account
from snn2loihi.cli import main
from snn2loihi.errors import InputError
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.netx import write_network
from snn2loihi.planning import LOIHI1, LOIHI2, PlanningError, axon_bits, plan_network, weight_bits
from snn2loihi.sim.emulator import Emulator, SimResult

SOFT = NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=64)


def _ceil64(bits: int) -> int:
    return -(-bits // 64) * 64


def test_axon_bits_by_hand():
    # 1 synapse of 8 bits: 8 + 10 header bits -> one 64-bit word
    assert int(axon_bits(1, 8)) == 64
    # 62 synapses: 62*8 + 10 = 506 -> 512; 64: 522 -> 576; 65: one full entry (576) + 1 synapse (64)
    assert axon_bits(np.array([0, 62, 63, 64, 65, 118, 119]), 8).tolist() == [0, 512, 576, 576, 640, 1024, 1088]


def test_dense_bound_by_synaptic_memory():
    """dense 1000 -> 300, 8-bit weights, Loihi 1 (128 KB = 1,048,576 bits per core).

    Every one of the 1000 inputs is an axon of every core, so a core of n neurons needs
    1000 * bits(n) <= 1,048,576, i.e. bits(n) <= 1048. bits(118) = 576 (a full entry of 64)
    + ceil64(54*8 + 10 = 442) = 448 -> 1024 fits; bits(119) = 576 + ceil64(450) = 1088 does
    not. So 118 neurons per core, 3 cores (118, 118, 64): 1,024,000 / 1,024,000 / 576,000 bits.
    """
    rng = np.random.default_rng(0)
    layer = DenseLayer(rng.integers(-128, 128, (300, 1000)) * 2, SOFT)
    assert weight_bits(layer) == 8
    plan = plan_network(Network([InputLayer((1000,)), layer]), LOIHI1)
    (lp,) = plan.layers
    assert (lp.cores, lp.neurons_per_core, lp.binding) == (3, 118, "synaptic memory")
    assert lp.fan_in.tolist() == [1000, 1000, 1000]
    assert lp.synapse_bits.tolist() == [1_024_000, 1_024_000, 576_000]
    assert (plan.cores, plan.chips) == (3, 1)
    assert lp.in_dest_cores.tolist() == [3] * 1000


def test_fan_in_too_large_fails_with_fix_but_fits_loihi2():
    layer = DenseLayer(np.full((10, 5000), 2), SOFT)
    net = Network([InputLayer((5000,)), layer], source="big.net")
    with pytest.raises(PlanningError, match=r"big.net: layer 1:dense: one neuron needs 5000 input axons, more than "
                                            r"the 4096 .*fix: reduce its fan-in"):
        plan_network(net, "loihi1")
    # Loihi 2 publishes no axon limits: 10 neurons x 5000 axons x bits(10) must fit 192 KB.
    # weights all equal -> netx uses 1-bit weights: bits(10) = ceil64(10*1 + 10) = 64 -> 320,000 bits.
    plan = plan_network(net, "loihi2")
    (lp,) = plan.layers
    assert (lp.cores, lp.binding, lp.synapse_bits.tolist()) == (1, "none (one core)", [5000 * 64])
    assert lp.synapse_format == "dense 1-bit"


def test_layer_larger_than_a_core_is_bound_by_neurons():
    # 2 x 40 x 40 = 3,200 neurons with a 3x3 kernel: far from axon and memory limits
    conv = ConvLayer((1, 40, 40), np.ones((2, 1, 3, 3)), SOFT, padding=1)
    plan = plan_network(Network([InputLayer((1, 40, 40)), conv]), LOIHI1)
    (lp,) = plan.layers
    assert (lp.cores, lp.neurons_per_core, lp.binding) == (4, 1024, "neurons per core")
    assert plan_network(Network([InputLayer((1, 40, 40)), conv]), LOIHI2).layers[0].cores == 1


def _brute_force_core(layer, chunk: range) -> tuple[int, dict]:
    """(fan-in, {input position: synapses}) of the output neurons ``chunk`` (flat C order),
    by enumerating every kernel tap of every output neuron."""
    c_out, h_out, w_out = layer.out_shape
    counts: dict = {}
    for flat in chunk:
        co, rest = divmod(flat, h_out * w_out)
        oy, ox = divmod(rest, w_out)
        if isinstance(layer, ConvLayer):
            c_in_g = layer.weight.shape[1]
            g = co // (c_out // layer.groups)
            channels = range(g * c_in_g, (g + 1) * c_in_g)
        else:
            channels = [co]
        for ci in channels:
            for ky in range(layer.kernel[0]):
                for kx in range(layer.kernel[1]):
                    y = oy * layer.stride[0] - layer.padding[0] + ky * layer.dilation[0]
                    x = ox * layer.stride[1] - layer.padding[1] + kx * layer.dilation[1]
                    if 0 <= y < layer.in_shape[1] and 0 <= x < layer.in_shape[2]:
                        counts[(ci, y, x)] = counts.get((ci, y, x), 0) + 1
    return len(counts), counts


def test_conv_cores_by_hand():
    """8x8 input, 3x3 kernel, padding 1, cores of 16 neurons = 2 output rows.

    Core k holds output rows 2k, 2k+1, which read input rows 2k-1 .. 2k+2: 4 rows x 8 = 32
    axons inside, 3 rows (24) at the borders. Sparse format: 8-bit weight + 6-bit index
    (16 neurons need 4 bits, the smallest index field is 6) = 14 bits per synapse. An
    input row read by both output rows gives 6 synapses per axon inside (ceil64(94) = 128)
    and 4 at the edges (ceil64(66) = 128): 8 x 128 = 1024 bits; a row read by one output
    row gives 3 or 2 synapses (52 or 38 -> 64): 512 bits. Border cores: 2 rows read twice +
    1 once = 2560; inner cores: 2 twice + 2 once = 3072.
    """
    conv = ConvLayer((1, 8, 8), np.ones((1, 1, 3, 3)), SOFT, padding=1)
    chip = replace(LOIHI1, neurons_per_core=16)
    (lp,) = plan_network(Network([InputLayer((1, 8, 8)), conv]), chip).layers
    assert lp.cores == 4 and lp.fan_in.tolist() == [24, 32, 32, 24]
    assert lp.synapse_bits.tolist() == [2560, 3072, 3072, 2560]
    assert lp.synapse_format == "sparse 8-bit + 6-bit index"
    # input row 1 is read by output rows 0, 1, 2 -> cores 0 and 1; row 0 only by core 0
    dest = lp.in_dest_cores.reshape(8, 8)
    assert dest[0].tolist() == [1] * 8 and dest[1].tolist() == [2] * 8 and dest[2].tolist() == [2] * 8


def test_memory_bound_conv_matches_brute_force():
    """A grouped, strided, dilated conv whose cores are cut by a small memory budget:
    every core's fan-in and bits equal brute-force enumeration, all within the budget, and
    one more neuron per core would break it."""
    rng = np.random.default_rng(1)
    conv = ConvLayer((4, 9, 9), rng.integers(1, 50, (6, 2, 3, 3)) * 2, SOFT, stride=(2, 1), padding=(1, 2),
                     dilation=(1, 2), groups=2)
    chip = replace(LOIHI1, neurons_per_core=64, synapse_memory_bits=6000)
    (lp,) = plan_network(Network([InputLayer((4, 9, 9)), conv]), chip).layers
    assert lp.binding == "synaptic memory" and lp.cores > 1

    def core_bits(n):
        neurons = int(np.prod(conv.out_shape))
        out = []
        for start in range(0, neurons, n):
            fan_in, counts = _brute_force_core(conv, range(start, min(neurons, start + n)))
            index = max(6, int(np.ceil(np.log2(max(n, 2)))))
            b = 8 + index
            bits = sum((c // 64) * _ceil64(64 * b + 10) + (_ceil64((c % 64) * b + 10) if c % 64 else 0)
                       for c in counts.values())
            out.append((fan_in, bits))
        return out

    expected = core_bits(lp.neurons_per_core)
    assert lp.fan_in.tolist() == [f for f, _ in expected]
    assert lp.synapse_bits.tolist() == [b for _, b in expected]
    assert max(b for _, b in expected) <= 6000
    assert max(b for _, b in core_bits(lp.neurons_per_core + 1)) > 6000


def test_fan_out_splits_the_source_layer_or_fails():
    """dense 4 -> 4 -> 100 with 10 neurons per core: the 100 outputs take 10 cores, each of
    the 4 hidden neurons reaches all 10, so a hidden core of n neurons needs 10n output
    axons. With 25 axons per core: n = 2, 2 cores. With 9: one neuron alone needs 10."""
    net = Network([InputLayer((4,)), DenseLayer(np.full((4, 4), 2), SOFT), DenseLayer(np.full((100, 4), 2), SOFT)])
    chip = replace(LOIHI1, neurons_per_core=10, fan_out_axons=25)
    hidden, out = plan_network(net, chip).layers
    assert (out.cores, out.neurons_per_core) == (10, 10)
    assert (hidden.cores, hidden.neurons_per_core, hidden.binding) == (2, 2, "fan-out axons")
    assert hidden.out_axons.tolist() == [20, 20]
    with pytest.raises(PlanningError, match="sends spikes to 10 cores of the next layers, more than the 9"):
        plan_network(net, replace(chip, fan_out_axons=9))


def test_spike_messages_equal_spikes_times_destination_cores():
    """Messages into the conv of test_conv_cores_by_hand: row 0 spikes reach 1 core,
    rows 1-6 reach 2, row 7 reaches 1."""
    conv = ConvLayer((1, 8, 8), np.ones((1, 1, 3, 3)), SOFT, padding=1)
    net = Network([InputLayer((1, 8, 8)), conv])
    plan = plan_network(net, replace(LOIHI1, neurons_per_core=16))
    x = np.zeros((2, 1, 8, 8, 3), dtype=np.uint8)
    x[0, 0, 0, 3, 0] = 1       # row 0: 1 core
    x[0, 0, 4, 4, 1] = 1       # row 4: 2 cores
    x[1, 0, 7, 0, 2] = 1       # row 7: 1 core
    x[1, 0, 1, 7, 0] = 1       # row 1: 2 cores
    result = SimResult(spikes={1: np.zeros((2, 1, 8, 8, 3), dtype=np.uint8)})
    (la,) = account(net, x, result, plan=plan).layers
    assert la.spike_messages == 1 + 2 + 1 + 2
    assert account(net, x, result).layers[0].spike_messages is None


def test_input_neuron_layer_and_flatten():
    net = Network([InputLayer((2, 4, 4), neuron=SOFT), PoolLayer((2, 4, 4), np.full((2, 2), 8), SOFT),
                   FlattenLayer((2, 2, 2)), DenseLayer(np.full((3, 8), 2), SOFT)])
    plan = plan_network(net, LOIHI1)
    assert [lp.name for lp in plan.layers] == ["0:input", "1:pool", "3:dense"]
    inp, pool, dense = plan.layers
    assert (inp.cores, inp.fan_in.tolist(), inp.synapse_bits.tolist()) == (1, [0], [0])
    assert pool.fan_in.tolist() == [32] and inp.out_axons.tolist() == [32]  # each input neuron -> the pool core
    assert dense.fan_in.tolist() == [8] and pool.out_axons.tolist() == [8]
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["cores"] == 3 and d["layers"][1]["binding_limit"] == "none (one core)"


def test_unknown_layer_type_is_a_clear_error():
    class Residual:
        in_shape = out_shape = (4,)
        neuron = SOFT

    net = Network([InputLayer((4,)), Residual()])
    with pytest.raises(InputError, match="layer type Residual is not supported"):
        plan_network(net, LOIHI1)


def test_cli_plan(tmp_path, capsys):
    path = tmp_path / "net.net"
    write_network(Network([InputLayer((1, 6, 6)), ConvLayer((1, 6, 6), np.ones((4, 1, 3, 3)) * 2, SOFT, padding=1),
                           FlattenLayer((4, 6, 6)), DenseLayer(np.full((3, 144), 2), SOFT)]), path)
    assert main(["plan", str(path), "--chip", "loihi2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["chip"]["name"] == "loihi2" and d["cores"] == 2 and "Intel" in d["chip"]["source"]
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "loihi1: 2 cores, 1 chip(s)" in out and "Davies" in out
    big = tmp_path / "big.net"
    write_network(Network([InputLayer((5000,)), DenseLayer(np.full((2, 5000), 2), SOFT)]), big)
    assert main(["plan", str(big)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"snn2loihi: error: {big}: layer 1:dense") and "fix:" in err[0]


def test_residual_skip_adds_axons_memory_fan_out_and_messages():
    """input (8) → A (6) → B (6) → C (4) with a skip A → C: C's cores hold 6 + 6 axons and
    both synapse groups; every A neuron feeds B's core and C's core (2 output axons)."""
    from snn2loihi.ir import Skip

    rng = np.random.default_rng(5)
    a = DenseLayer(rng.integers(10, 60, (6, 8)) * 2, SOFT)
    b = DenseLayer(rng.integers(10, 60, (6, 6)) * 2, SOFT)
    c = DenseLayer(rng.integers(10, 60, (4, 6)) * 2, SOFT, skip=Skip(source=1, weight=rng.integers(10, 60, (4, 6)) * 2))
    net = Network([InputLayer((8,)), a, b, c])
    plan = plan_network(net, LOIHI1)
    pa, pb, pc = plan.layers
    # 8-bit dense weights, 4 targets per axon: ceil64(4*8 + 10) = 64 bits per axon
    assert pc.fan_in.tolist() == [12] and pc.synapse_bits.tolist() == [12 * 64]
    assert pa.out_axons.tolist() == [12] and pb.out_axons.tolist() == [6]
    assert pc.skip_dest_cores.tolist() == [1] * 6
    x = (rng.random((3, 8, 10)) < 0.6).astype(np.uint8)
    x[..., -3:] = 0
    result = Emulator(net).run(x, record_all=True)
    acc = account(net, x, result, plan=plan)
    la_c = acc.layers[-1]
    s_a, s_b = result.spikes[1], result.spikes[2]
    assert s_a.sum() > 0 and s_b.sum() > 0
    assert la_c.synops == 4 * int(s_b.sum()) + 4 * int(s_a.sum())
    assert la_c.spike_messages == int(s_b.sum()) + int(s_a.sum())
    assert la_c.ann_macs == 2 * 24
    # active: an event from B or (through the skip) from A arrived at step t
    events = (s_a[..., :-1].any(axis=1) | s_b[..., :-1].any(axis=1)).sum()
    assert la_c.active_updates == 4 * int(events)
