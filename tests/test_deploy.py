"""Hard-reset export, threshold rebalancing and the deploy command. The Loihi 2 hardware
run itself needs lava-loihi and a board: here we check that its absence is reported in
one line, and drive the command's hardware branch with the board replaced by a stub."""
from __future__ import annotations

import numpy as np
import pytest

import snn2loihi.deploy as deploy
from snn2loihi.cli import main
from snn2loihi.deploy import (HardwareRun, HardwareUnavailable, compare_resets, loihi_extension_status,
                              rebalance_thresholds, run_on_loihi2, soft_layers, stock_netx_problems, to_hard_reset)
from snn2loihi.errors import InputError
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.netx import read_network, write_network
from snn2loihi.sim.emulator import Emulator

needs_no_loihi = pytest.mark.skipif(loihi_extension_status() is None, reason="lava-loihi is installed here")


def if_counts(drive, vth: int, soft: bool) -> int:
    """Spikes of one integrate-and-fire neuron receiving ``drive[t]`` at step t (the chip's
    rule: v += drive; spike when v > vth; then v -= vth or v = 0), by hand."""
    v = spikes = 0
    for d in drive:
        v += int(d)
        if v > vth:
            spikes += 1
            v = v - vth if soft else 0
    return spikes


def population(vth: int = 300) -> Network:
    """One always-on input → 20 IF neurons with weights 20, 30, ..., 210 (soft reset)."""
    w = (np.arange(20) * 10 + 20).reshape(20, 1)
    return Network([InputLayer((1,)), DenseLayer(w, NeuronSpec("CUBA_SOFT", 4096, 0, vth))])


def test_hard_export_loses_the_charge_above_threshold():
    net = population()
    steps = 30
    x = np.ones((1, 1, steps + 1), dtype=np.int64)
    x[..., -1] = 0  # the last input arrives one step later (synaptic delay)
    soft = Emulator(net).run(x).output[0].sum(-1)
    hard = Emulator(to_hard_reset(net)).run(x).output[0].sum(-1)
    w = np.arange(20) * 10 + 20
    assert soft.tolist() == [if_counts([d] * steps, 300, soft=True) for d in w]
    assert hard.tolist() == [if_counts([d] * steps, 300, soft=False) for d in w]
    assert (hard <= soft).all() and (hard < soft).any()
    assert to_hard_reset(net).layers[1].neuron.kind == "CUBA" and soft_layers(to_hard_reset(net)) == []


def test_rebalancing_matches_the_soft_rates_better():
    """Random input spikes into 20 IF neurons: the hard reset loses ~30 % of the spikes; a
    lower threshold wins most of them back. Errors recomputed with a loop per neuron."""
    rng = np.random.default_rng(0)
    w = rng.integers(5, 60, (20, 10)) * 2
    net = Network([InputLayer((10,)), DenseLayer(w, NeuronSpec("CUBA_SOFT", 4096, 0, 300))])
    x = (rng.random((16, 10, 31)) < 0.3).astype(np.int64)
    x[..., -1] = 0
    rb = rebalance_thresholds(net, x)
    vth = rb.net.layers[1].neuron.vth_mant
    assert rb.factors[1] < 1 and vth == round(rb.factors[1] * 300)
    drive = np.einsum("ij,njt->nit", w, x)[..., :-1]  # arrives one step later: the last step's lands outside

    def error(threshold: int) -> float:
        soft = np.array([[if_counts(d, 300, True) for d in sample] for sample in drive])
        hard = np.array([[if_counts(d, threshold, False) for d in sample] for sample in drive])
        return float(np.abs(hard - soft).sum() / soft.sum())

    assert rb.spike_error_plain[1] == pytest.approx(error(300)) and error(300) > 0.2
    assert rb.spike_error[1] == pytest.approx(error(vth)) and error(vth) < error(300) / 2


def test_compare_resets_reports_accuracy_of_each_variant():
    rng = np.random.default_rng(0)
    w1 = rng.integers(10, 120, (16, 8)) * 2
    w2 = rng.integers(-40, 100, (4, 16)) * 2
    net = Network([InputLayer((8,)), DenseLayer(w1, NeuronSpec("CUBA_SOFT", 4096, 0, 400)),
                   DenseLayer(w2, NeuronSpec("CUBA_SOFT", 4096, 0, 300))])
    x = (rng.random((40, 8, 22)) < 0.5).astype(np.int64)
    x[..., -2:] = 0
    soft_pred = Emulator(net).run(x).output.sum(-1).argmax(-1)
    labels = soft_pred.copy()
    labels[:10] = (labels[:10] + 1) % 4  # the soft network is right on 30 of 40
    cmp = compare_resets(net, x, labels)
    soft, hard, rebalanced = cmp.rows
    assert soft["accuracy"] == pytest.approx(0.75) and soft["agreement"] == 1.0
    hard_pred = Emulator(to_hard_reset(net)).run(x).output.sum(-1).argmax(-1)
    assert hard["accuracy"] == pytest.approx(float((hard_pred == labels).mean()))
    assert hard["agreement"] == pytest.approx(float((hard_pred == soft_pred).mean()))
    rb_pred = Emulator(cmp.rebalance.net).run(x).output.sum(-1).argmax(-1)
    assert rebalanced["accuracy"] == pytest.approx(float((rb_pred == labels).mean()))
    assert "rebalanced thresholds" in rebalanced["variant"] and "rebalanced thresholds" in cmp.format_table()
    assert cmp.to_dict()["rebalance"]["factors"].keys() == {"1", "2"}
    with pytest.raises(InputError, match="no soft-reset"):
        compare_resets(to_hard_reset(net), x)


def test_stock_netx_problems_and_hard_file_loads_in_stock_netx(tmp_path):
    soft = NeuronSpec("CUBA_SOFT", 4096, 0, 80)
    conv = ConvLayer((1, 6, 6), np.full((2, 1, 3, 3), 20), soft, padding=1)
    pool = PoolLayer((2, 6, 6), np.full((2, 2), 30), soft)
    net = Network([InputLayer((1, 6, 6)), conv, pool, FlattenLayer((2, 3, 3)), DenseLayer(np.full((3, 18), 8), soft)])
    problems = stock_netx_problems(net)
    assert len(problems) == 2 and "[1, 2, 4] reset softly" in problems[0] and "[2] are pool" in problems[1]
    plain = Network([net.layers[0], conv, FlattenLayer((2, 6, 6)), DenseLayer(np.full((3, 72), 8), soft)])
    hard = to_hard_reset(plain)
    assert stock_netx_problems(hard) == []
    path = tmp_path / "hard.net"
    write_network(hard, path)
    from snn2loihi.lava_imports import netx

    stock = netx().hdf5.Network(net_config=str(path))  # lava-dl's own loader accepts it
    assert [type(block).__name__ for block in stock.layers] == ["Conv", "Dense"]


@needs_no_loihi
def test_hardware_absent_is_one_line(tmp_path, capsys):
    path = tmp_path / "n.net"
    write_network(population(), path)
    with pytest.raises(HardwareUnavailable, match="lava-loihi.*CPU simulation is available"):
        run_on_loihi2(str(path), np.zeros((1, 1, 4)))
    assert main(["deploy", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lava.magma.compiler.subcompilers.nc is not importable" in err[0]
    assert f"snn2loihi simulate {path} --backend lava" in err[0]


def test_check_only_writes_the_hard_export(tmp_path, capsys):
    path, hard, xs, ys = tmp_path / "n.net", tmp_path / "h.net", tmp_path / "x.npy", tmp_path / "y.npy"
    write_network(population(), path)
    x = np.ones((3, 1, 20), dtype=np.uint8)
    np.save(xs, x)
    np.save(ys, np.array([19, 19, 0]))
    assert main(["deploy", str(path), "--check-only", "--input", str(xs), "--labels", str(ys),
                 "--hard-out", str(hard)]) == 0
    out = capsys.readouterr().out
    assert "Reset comparison on the emulator (3 samples)" in out and "stock netx can load" in out
    written = read_network(hard)
    assert written.layers[1].neuron.kind == "CUBA" and written.layers[1].neuron.vth_mant < 300


def test_hardware_branch_with_a_stub_board(tmp_path, monkeypatch, capsys):
    """With lava-loihi 'present', deploy runs the rebalanced hard-reset file on the board
    and reports its accuracy; the board is a stub that runs the emulator."""
    seen = {}

    def board(net_path, x, partition, board, profile):
        net = read_network(net_path)
        seen["kinds"] = [layer.neuron.kind for layer in net.layers[1:]]
        seen["partition"] = partition
        return HardwareRun(Emulator(net).run(x).output, {"total_energy_nj": 5.0, "dynamic_energy_nj": 2.0})

    monkeypatch.setattr(deploy, "loihi_extension_status", lambda: None)
    monkeypatch.setattr(deploy, "_hardware_run", board)
    path, xs, ys, out = tmp_path / "n.net", tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "out.npy"
    write_network(population(), path)
    np.save(xs, np.ones((2, 1, 10), dtype=np.uint8))
    np.save(ys, np.array([19, 3]))
    assert main(["deploy", str(path), "--input", str(xs), "--labels", str(ys), "--partition", "kp",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert seen == {"kinds": ["CUBA"], "partition": "kp"}
    hard = Emulator(to_hard_reset(population())).run(np.ones((2, 1, 11), dtype=np.int64)).output
    expected = float((hard.sum(-1).argmax(-1) == np.array([19, 3])).mean())
    assert f"Loihi 2 accuracy: {expected:.4f} on 2 samples" in text and "5 nJ total, 2 nJ dynamic" in text
    assert np.load(out).shape == (2, 20, 11)


def test_residual_layers_have_no_hard_reset_export():
    from snn2loihi.ir import Skip

    soft = NeuronSpec("CUBA_SOFT", 4096, 0, 80)
    net = Network([InputLayer((4,)), DenseLayer(np.full((3, 4), 20), soft), DenseLayer(np.full((3, 3), 20), soft),
                   DenseLayer(np.full((2, 3), 20), soft, skip=Skip(source=1, weight=np.full((2, 3), 10)))])
    with pytest.raises(InputError, match=r"layers \[3\] use a residual skip, v_init or a firing window.*no hard-reset"):
        to_hard_reset(net)
    assert stock_netx_problems(net) == ["layers [3] use residual skips, v_init or firing windows, which stock netx "
                                        "cannot load and which have no hard-reset export"]
    held = Network([InputLayer((4,)), DenseLayer(np.full((3, 4), 20), soft, fire_window=(2, 6))])
    with pytest.raises(InputError, match=r"layers \[1\] use a residual skip, v_init or a firing window"):
        to_hard_reset(held)
