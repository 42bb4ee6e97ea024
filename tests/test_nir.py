"""NIR interchange: an exact round trip, what other toolkits see of a soft reset, and a
graph written by snnTorch's own exporter (``snntorch.export_nir.export_to_nir``, through
nirtorch) imported and checked spike for spike against snnTorch's simulation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from snn2loihi.cli import main
from snn2loihi.deploy import to_hard_reset
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.netx import read_network, write_network
from snn2loihi.nir_io import NirError, SoftResetWarning, nir_to_blocks, read_nir, write_nir
from snn2loihi.quantize import quantize_network
from snn2loihi.sim.emulator import Emulator

nir = pytest.importorskip("nir")

SOFT = NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=100)


def mixed_net(rng) -> Network:
    """IF soft conv (bias) → LIF hard pool → grouped IF soft conv → flatten → CubaLIF dense."""
    c1 = ConvLayer((2, 8, 8), rng.integers(-60, 100, (4, 2, 3, 3)) * 2, SOFT, padding=1, bias=rng.integers(-5, 10, 4))
    pool = PoolLayer(c1.out_shape, np.full((2, 2), 40), NeuronSpec("CUBA", 4096, 512, 80))
    c2 = ConvLayer(pool.out_shape, rng.integers(-60, 100, (6, 2, 3, 3)) * 2, SOFT, groups=2)
    dense = DenseLayer(rng.integers(-100, 120, (5, 24)) * 2, NeuronSpec("CUBA", 2048, 1024, 120))
    return Network([InputLayer((2, 8, 8)), c1, pool, c2, FlattenLayer(c2.out_shape), dense])


def _same_layers(a: Network, b: Network) -> None:
    assert [type(x) for x in a.layers] == [type(y) for y in b.layers]
    for x, y in zip(a.layers, b.layers):
        assert getattr(x, "neuron", None) == getattr(y, "neuron", None)
        for attr in ("weight", "bias", "stride", "padding", "dilation", "groups"):
            vx, vy = getattr(x, attr, None), getattr(y, attr, None)
            assert (vx is None and vy is None) or np.array_equal(vx, vy), attr


def test_round_trip_is_exact_and_soft_reset_warns(tmp_path):
    rng = np.random.default_rng(0)
    net = mixed_net(rng)
    path = tmp_path / "g.nir"
    with pytest.warns(SoftResetWarning, match=r"layers 1:conv, 3:conv are written with v_reset = 0, a HARD reset"):
        write_nir(net, str(path))
    back, _ = quantize_network(nir_to_blocks(str(path)).model)
    _same_layers(net, back)
    x = (rng.random((10, 2, 8, 8, 12)) < 0.4).astype(np.uint8)
    x[..., -net.latency:] = 0
    a, b = Emulator(net).run(x, record_all=True), Emulator(back).run(x, record_all=True)
    for i in a.spikes:
        assert a.spikes[i].sum() > 0 and np.array_equal(a.spikes[i], b.spikes[i]), i


def test_what_other_toolkits_read(tmp_path):
    """The file itself: hard reset for everyone, our marker in metadata, NIR's units and ODEs."""
    net = mixed_net(np.random.default_rng(1))
    path = tmp_path / "g.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftResetWarning)
        write_nir(net, str(path), dt=1e-3)
    g = read_nir(str(path))
    assert [type(g.nodes[k]).__name__ for k in ("1.neuron", "2.neuron", "5.neuron")] == ["IF", "LIF", "CubaLIF"]
    n1 = g.nodes["1.neuron"]
    assert np.all(n1.v_reset == 0) and n1.v_threshold.shape == (4, 8, 8) and np.all(n1.v_threshold == 100 / 64)
    assert n1.metadata["snn2loihi_reset"] in ("subtract", b"subtract")
    assert "snn2loihi_reset" not in (g.nodes["2.neuron"].metadata or {})
    # vDecay 512 → dt/tau = 1/8 → tau = 8 dt; r = tau/dt so the input gain r·dt/tau is 1
    assert np.allclose(g.nodes["2.neuron"].tau, 8e-3) and np.allclose(g.nodes["2.neuron"].r, 8)
    # iDecay 2048, vDecay 1024: tau_syn = 2 dt, tau_mem = 4 dt, w_in = 2, r = 4
    d = g.nodes["5.neuron"]
    assert np.allclose(d.tau_syn, 2e-3) and np.allclose(d.tau_mem, 4e-3) and np.allclose(d.w_in, 2)
    assert np.allclose(g.nodes["1.synapse"].weight, net.layers[1].weight / 64)
    assert type(g.nodes["2.synapse"]).__name__ == "SumPool2d" and np.allclose(g.nodes["2.synapse1"].scale, 40 / 64)


def test_forced_resets_and_bad_graphs(tmp_path):
    net = mixed_net(np.random.default_rng(2))
    path = tmp_path / "g.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftResetWarning)
        write_nir(net, str(path))
    hard, _ = quantize_network(nir_to_blocks(str(path), reset="hard").model)
    _same_layers(to_hard_reset(net), hard)
    # an LI readout (common in Norse/snnTorch graphs) has no spiking equivalent
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([3])), nir.Linear(weight=np.ones((2, 3))),
                                   nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)),
                                   nir.Output(output_type=np.array([2])))
    with pytest.raises(NirError, match="LI has no equivalent in our blocks"):
        nir_to_blocks(graph)
    leaky = nir.NIRGraph.from_list(nir.Input(input_type=np.array([3])), nir.Linear(weight=np.ones((2, 3))),
                                   nir.LIF(tau=np.full(2, 1e-5), r=np.ones(2), v_leak=np.zeros(2),
                                           v_threshold=np.ones(2)), nir.Output(output_type=np.array([2])))
    with pytest.raises(NirError, match="shorter than dt"):
        nir_to_blocks(leaky)
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    with pytest.raises(NirError, match="not a readable NIR graph"):
        read_nir(str(bad))


def _snntorch_net(rng):
    """Linear(6→5, bias) → Leaky → Linear(5→3, bias) → Leaky (float32, snnTorch's spike dtype;
    every parameter is an exact binary fraction), weights on slayer's
    8-bit grid (multiples of 2/64), biases on 1/64, β = 1 - 512/4096, θ = 1, reset to zero
    applied in the same step (reset_delay=False): v = β v + W s + b; s = v > 1; v = 0."""
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    torch.manual_seed(0)

    def leaky(n, out=False):
        return snn.Leaky(beta=torch.full((n,), 0.875), threshold=torch.ones(n),
                         reset_mechanism="zero", reset_delay=False, init_hidden=True, output=out)

    lin1, lin2 = torch.nn.Linear(6, 5), torch.nn.Linear(5, 3)
    with torch.no_grad():
        lin1.weight.copy_(torch.as_tensor(rng.integers(-20, 40, (5, 6)) * 2 / 64, dtype=torch.float32))
        lin2.weight.copy_(torch.as_tensor(rng.integers(-10, 50, (3, 5)) * 2 / 64, dtype=torch.float32))
        lin1.bias.copy_(torch.as_tensor(rng.integers(-4, 8, 5) / 64, dtype=torch.float32))
        lin2.bias.copy_(torch.as_tensor(rng.integers(-4, 8, 3) / 64, dtype=torch.float32))
    return snn, torch.nn.Sequential(lin1, leaky(5), lin2, leaky(3, out=True))


def test_import_of_a_graph_written_by_snntorch(tmp_path):
    rng = np.random.default_rng(3)
    snn, model = _snntorch_net(rng)
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    graph = export_to_nir(model, torch.zeros(1, 6), ignore_dims=[0])
    path = tmp_path / "snntorch.nir"
    nir.write(str(path), graph)
    x = (rng.random((8, 6, 20)) < 0.5).astype(np.float64)
    snn_utils.reset(model)
    ref1, ref2 = [], []
    with torch.no_grad():
        for t in range(x.shape[-1]):
            h = model[1](model[0](torch.as_tensor(x[..., t], dtype=torch.float32)))
            ref1.append(h)
            ref2.append(model[3](model[2](h))[0])
    ref1, ref2 = torch.stack(ref1, -1).numpy(), torch.stack(ref2, -1).numpy()
    assert 0 < ref2.mean() < 0.9 and 0 < ref1.mean() < 0.9

    imported = nir_to_blocks(str(path))  # snnTorch writes v_reset = 0: hard reset
    ours = imported.model.double()
    ours.set_fixed_point(False)
    with torch.no_grad():
        _, outs = ours(torch.as_tensor(x), record=True)
    np.testing.assert_array_equal(outs[1].numpy(), ref1)   # blocks: Input, Dense, Dense
    np.testing.assert_array_equal(outs[-1].numpy(), ref2)

    # on to Loihi: the quantized file's emulator matches the fixed-point blocks, one step of
    # latency per synapse layer later
    net, _ = quantize_network(ours)
    assert all(layer.neuron.kind == "CUBA" and layer.bias is not None for layer in net.layers[1:])
    netx_path = tmp_path / "snntorch.net"
    write_network(net, netx_path)
    ours.set_fixed_point(True)
    with torch.no_grad():
        _, fixed = ours(torch.as_tensor(x), record=True)
    result = Emulator(read_network(netx_path)).run(np.pad(x, ((0, 0), (0, 0), (0, 2))).astype(np.int64),
                                                   record_all=True)
    for index, delay in ((1, 1), (2, 2)):
        np.testing.assert_array_equal(result.spikes[index][..., delay:delay + 20], fixed[index].numpy())


def test_cli_export_and_import(tmp_path, capsys):
    net = mixed_net(np.random.default_rng(4))
    src, graph, back = tmp_path / "a.net", tmp_path / "a.nir", tmp_path / "b.net"
    write_network(net, src)
    assert main(["nir", "export", str(src), "--out", str(graph)]) == 0
    err = capsys.readouterr().err
    assert "snn2loihi: WARNING: NIR has no subtractive (soft) reset" in err
    assert main(["nir", "import", str(graph), "--out", str(back)]) == 0
    assert "Conv with soft reset" in capsys.readouterr().out
    _same_layers(read_network(src), read_network(back))
    assert main(["nir", "import", str(tmp_path / "missing.nir"), "--out", str(back)]) == 2
    assert "missing.nir: no such file" in capsys.readouterr().err


def test_residual_skip_is_a_clear_export_error(tmp_path):
    from snn2loihi.ir import Skip

    net = Network([InputLayer((4,)), DenseLayer(np.full((3, 4), 20), SOFT), DenseLayer(np.full((3, 3), 20), SOFT),
                   DenseLayer(np.full((2, 3), 20), SOFT, skip=Skip(source=1, weight=np.full((2, 3), 10)))])
    with pytest.raises(NirError, match="layer 3: residual skips and v_init are not exported"):
        write_nir(net, str(tmp_path / "r.nir"))


def test_cli_export_of_a_checkpoint_goes_through_the_trainers_quantizer(tmp_path, monkeypatch, capsys):
    """A non-HDF5 argument is read as a training checkpoint (snn2loihi.training.deploy);
    the trainer's own loader is replaced here by one returning a known model."""
    import snn2loihi.training.deploy as training_deploy

    net = mixed_net(np.random.default_rng(6))

    class Model:
        def to_ir(self):
            return net, None

    monkeypatch.setattr(training_deploy, "load_classifier", lambda path: (Model(), {"path": path}))
    ckpt, graph = tmp_path / "model.pt", tmp_path / "m.nir"
    ckpt.write_bytes(b"not hdf5: a torch checkpoint")
    assert main(["nir", "export", str(ckpt), "--out", str(graph)]) == 0
    capsys.readouterr()
    back, _ = quantize_network(nir_to_blocks(str(graph)).model)
    _same_layers(net, back)
