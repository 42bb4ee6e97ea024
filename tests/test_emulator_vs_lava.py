"""The batched emulator against real Lava runs, spike for spike at every layer.

Lava side: ``run_lava`` builds netx blocks (Lava's Dense/Conv synapses, Lava's LIF or our
LIFSoftReset) and streams several samples through one run with resets in between; or it
runs the blocks that UNMODIFIED ``lava.lib.dl.netx.hdf5.Network`` built from a file.
Every comparison also requires every compared layer to spike at least once, so that
agreement is not the trivial agreement of two silent networks.

Runtime note: Lava's CPU backend reads sink buffers back one value per message, so the
big stock network (pilotnet) records only its deep layer 9 (which depends on every
earlier layer) instead of all layers.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import assert_same_spikes, random_input, random_network, stock_file
from snn2loihi.ir import DenseLayer, InputLayer, Network, NeuronSpec
from snn2loihi.lava_imports import netx as _netx
from snn2loihi.netx.reader import read_network
from snn2loihi.netx.writer import write_network
from snn2loihi.sim.emulator import Emulator
from snn2loihi.sim.lava_runner import run_lava


def stock_network(path: str):
    """``lava.lib.dl.netx.hdf5.Network`` exactly as lava-dl ships it."""
    return _netx().hdf5.Network(net_config=str(path))


def stock_blocks(net: Network, stock) -> list:
    """Pair the stock network's blocks with the IR layer indices that own neurons."""
    indices = [i for i, _ in net.neuron_layers]
    assert len(indices) == len(stock.layers), \
        f"stock netx built {len(stock.layers)} blocks for {len(indices)} neuron layers"
    return list(zip(indices, stock.layers))


# --------------------------------------------------------------------------- random nets

RANDOM_CASES = [
    # (kind, soft, input_neuron, seed)
    ("dense", False, False, 0),
    ("dense", True, True, 1),
    ("conv", False, False, 2),
    ("conv", True, False, 3),
    ("conv", True, True, 4),
    ("conv", False, True, 5),
]


@pytest.mark.parametrize("kind,soft,input_neuron,seed", RANDOM_CASES,
                         ids=[f"{k}-{'soft' if s else 'hard'}-{'inneuron' if n else 'spikes'}"
                              for k, s, n, _ in RANDOM_CASES])
def test_random_network_emulator_equals_lava(kind, soft, input_neuron, seed):
    """On random dense and conv+pool+flatten+dense networks (hard, or mixed soft/hard
    resets; binary spike input or an input neuron fed with currents), four samples
    streamed through one Lava run give exactly the emulator's spikes at every layer."""
    net = random_network(kind, soft, seed, input_neuron)
    x = random_input(net, n=4, steps=12, seed=seed + 100)
    expected = Emulator(net).run(x, record_all=True)
    actual = run_lava(net, x, record_all=True)
    assert_same_spikes(expected, actual)


def test_samples_are_independent_in_lava_stream():
    """Lava's reset between samples really isolates them: a sample streamed after others
    gives the same spikes as when it runs alone (and the emulator agrees with both)."""
    net = random_network("dense", True, 7)
    x = random_input(net, n=3, steps=10, seed=8)
    together = run_lava(net, x, record_all=False)
    alone = run_lava(net, x[2:3], record_all=False)
    last = max(together.spikes)
    assert alone.spikes[last].sum() > 0
    np.testing.assert_array_equal(together.spikes[last][2:3], alone.spikes[last])
    np.testing.assert_array_equal(Emulator(net).run(x).output, together.spikes[last])


def test_overflow_network_emulator_equals_lava():
    """Where the 24-bit registers overflow (u wraps, v clips), emulator and Lava still
    agree spike for spike, and the emulator reports the overflow events.

    Layer 0 is an input neuron fed up to 150000 (u up to 9.6e6) with a non-leaky v that
    clips; layer 1 integrates ~128 strong inputs without current decay, so its u wraps
    past 2^23 within a few steps.
    """
    rng = np.random.default_rng(11)
    layers = [
        InputLayer((128,), NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=131071)),
        DenseLayer(np.full((6, 128), 254) - 2 * rng.integers(0, 40, size=(6, 128)),
                   NeuronSpec("CUBA_SOFT", i_decay=0, v_decay=2048, vth_mant=60000)),
        DenseLayer(rng.integers(-64, 128, size=(4, 6)) * 2,
                   NeuronSpec("CUBA", i_decay=4096, v_decay=1024, vth_mant=50)),
    ]
    net = Network(layers)
    x = rng.integers(-20_000, 150_000, size=(3, 128, 20))
    expected = Emulator(net).run(x, record_all=True)
    assert expected.overflow.current_wraps > 0, "test setup: layer 1's u should wrap"
    assert expected.overflow.voltage_clips > 0, "test setup: v should clip"
    actual = run_lava(net, x, record_all=True)
    assert_same_spikes(expected, actual)


def test_geometry_and_weight_scaling_emulator_equals_lava():
    """Conv with stride (2, 1), padding (1, 0), dilation (1, 2) and groups 3, a pool with
    an asymmetric stride, padding and a negative tap, and dense layers whose weights netx
    rescales (small weights → weight exponent -5, all-positive weights → 8 bits unsigned,
    mostly-positive → exponent -2): emulator and Lava agree at every layer."""
    from snn2loihi.ir import ConvLayer, FlattenLayer, PoolLayer
    from snn2loihi.sim.synapses import dense_weights

    rng = np.random.default_rng(1)

    def spec(vth, kind="CUBA_SOFT"):
        return NeuronSpec(kind, i_decay=4096, v_decay=1024, vth_mant=vth)

    conv = ConvLayer((3, 11, 9), rng.integers(-60, 127, size=(6, 1, 3, 2)) * 2, spec(150),
                     stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=3,
                     bias=rng.integers(-20, 50, size=6))
    pool = PoolLayer(conv.out_shape, np.array([[64, 63], [31, -2]]), spec(60, "CUBA"),
                     stride=(1, 2), padding=(1, 1))
    flat = FlattenLayer(pool.out_shape)
    d1 = DenseLayer(rng.integers(-7, 8, size=(12, int(np.prod(pool.out_shape)))), spec(3))
    d2 = DenseLayer(rng.integers(0, 255, size=(8, 12)), spec(400, "CUBA"))
    d3 = DenseLayer(40 - rng.integers(0, 50, size=(4, 8)), spec(30))
    net = Network([InputLayer((3, 11, 9)), conv, pool, flat, d1, d2, d3])
    assert dense_weights(d1.weight).weight_exp < 0, "test setup: d1 should need a weight exponent"
    x = random_input(net, n=3, steps=14, seed=5, rate=0.4)
    assert_same_spikes(Emulator(net).run(x, record_all=True), run_lava(net, x, record_all=True))


def test_non_binary_spike_input_is_not_silently_misread():
    """Spike input (input layer without neuron) must be binary. Lava's synapses read any
    non-zero value as one spike; the emulator must either refuse a 3 (ValueError /
    InputError) or read it as Lava does. Silently disagreeing is the failure."""
    from snn2loihi.errors import InputError

    net = random_network("dense", False, 0)
    x = random_input(net, n=2, steps=10, seed=1) * 3
    try:
        expected = Emulator(net).run(x, record_all=True)
    except (ValueError, InputError):
        return  # refused: not misread
    assert_same_spikes(expected, run_lava(net, x, record_all=True))


# --------------------------------------------------------------------------- stock netx

@pytest.mark.parametrize("input_neuron", [False, True], ids=["spike-input", "input-neuron"])
def test_written_file_runs_identically_in_stock_netx(tmp_path, input_neuron):
    """A hard-reset input/conv/flatten/dense network written by ``write_network`` loads in
    UNMODIFIED ``netx.hdf5.Network``, and those stock blocks, run by ``run_lava``, give
    the emulator's spikes at every layer (so our file layout, weight order, conv
    transpose, flatten order and bias are read by netx exactly as we meant them)."""
    net = random_network("conv_nopool", False, seed=21 if input_neuron else 20,
                         input_neuron=input_neuron)
    path = tmp_path / "net.net"
    write_network(net, path)
    stock = stock_network(path)
    x = random_input(net, n=3, steps=12, seed=22)
    expected = Emulator(net).run(x, record_all=True)
    actual = run_lava(net, x, record_all=True, blocks=stock_blocks(net, stock))
    assert_same_spikes(expected, actual)
    # And the file read back by our reader runs the same in the emulator.
    again = Emulator(read_network(path)).run(x, record_all=True)
    assert_same_spikes(expected, again)


def test_stock_tiny_net(stock_netx_dir):
    """lava-dl's tiny.net (input neuron, two convs with bias): stock blocks == emulator."""
    path = stock_file(stock_netx_dir, "tiny.net")
    net = read_network(path)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 60, size=(3,) + net.input.shape + (8,))
    x[..., -2:] = 0
    expected = Emulator(net).run(x, record_all=True)
    actual = run_lava(net, x, record_all=True, blocks=stock_blocks(net, stock_network(path)))
    assert_same_spikes(expected, actual)


def test_stock_mnist_net(stock_netx_dir):
    """lava-dl's mnist.net (input neuron, dense layers, a readout dense without neuron):
    stock blocks == emulator at every layer; the readout never reaches threshold in
    either."""
    path = stock_file(stock_netx_dir, "mnist.net")
    net = read_network(path)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 100, size=(3,) + net.input.shape + (14,))
    x[..., -3:] = 0
    expected = Emulator(net).run(x, record_all=True)
    actual = run_lava(net, x, record_all=True, blocks=stock_blocks(net, stock_network(path)))
    assert_same_spikes(expected, actual, allow_silent=(len(net.layers) - 1,))


def test_stock_pilotnet_lif(stock_netx_dir):
    """lava-dl's pilotnet_lif network (input neuron, 5 convs, flatten, 4 dense) on two
    scaled copies of its test image: the spikes of dense layer 9, which depend on every
    earlier layer, are identical in stock netx blocks and in the emulator.

    Only layer 9 is recorded: reading every layer of this 160k-neuron network back from
    Lava's sinks would take minutes (one message per value)."""
    folder = os.path.join(stock_netx_dir, "gts", "pilotnet_lif")
    path = stock_file(folder, "network.net")
    image = np.load(stock_file(folder, "image.npy")).transpose(2, 1, 0)  # (C, H, W)
    net = read_network(path)
    steps, scales = 12, (0.5, 0.9)
    x = np.stack([np.repeat((image * s).astype(np.int64)[..., None], steps, -1) for s in scales])
    recorded = 9
    expected = Emulator(net).run(x, record_all=True)
    pairs = [p for p in stock_blocks(net, stock_network(path)) if p[0] <= recorded]
    actual = run_lava(net, x, record_all=False, blocks=pairs)
    assert list(actual.spikes) == [recorded]
    assert expected.spikes[recorded].sum() > 0
    np.testing.assert_array_equal(actual.spikes[recorded], expected.spikes[recorded])


def test_readout_layer_matches_stock_netx(tmp_path):
    """A dense layer stored without a neuron group is, in stock netx, a non-leaky
    integrator whose threshold (``1 << 18 - 1`` = 131072, i.e. 2^23 after the << 6) is
    above the largest v (2^23 - 1): it never spikes. Our emulator must agree with stock
    netx on such a file even when v gets large.

    Here 40 always-on inputs with weight 254 add 10160 << 6 = 650,240 to u per step
    (iDecay 0), so v = u passes 2^22 after 7 steps but stays below 2^23 within the window.
    """
    net = Network([InputLayer((40,)), DenseLayer(np.full((3, 40), 254), None)])
    path = tmp_path / "readout.net"
    write_network(net, path)
    x = np.ones((1, 40, 10), dtype=np.int64)
    actual = run_lava(net, x, record_all=True, blocks=stock_blocks(net, stock_network(path)))
    assert actual.output.sum() == 0  # stock netx: the readout never fires
    expected = Emulator(read_network(path)).run(x, record_all=True)
    np.testing.assert_array_equal(expected.output, actual.output,
                                  err_msg="emulator readout spikes where stock netx does not")


def test_stock_netx_refuses_soft_reset_file(tmp_path):
    """Stock netx raises on our CUBA_SOFT neurons instead of silently building a
    hard-reset LIF; the same network with CUBA neurons loads (control)."""
    soft = random_network("dense", True, 30)
    hard = Network([layer if not isinstance(layer, DenseLayer) else
                    DenseLayer(layer.weight, NeuronSpec("CUBA", layer.neuron.i_decay,
                                                        layer.neuron.v_decay, layer.neuron.vth_mant),
                               layer.bias)
                    for layer in soft.layers])
    assert any(l.neuron is not None and l.neuron.soft_reset for l in soft.layers[1:])
    write_network(soft, tmp_path / "soft.net")
    write_network(hard, tmp_path / "hard.net")
    assert len(stock_network(tmp_path / "hard.net").layers) == 3
    # netx 0.6.0 has no parameters for an unknown neuron type: neuron_params() gives None
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'pop'"):
        stock_network(tmp_path / "soft.net")


def test_stock_netx_refuses_pool_layer(tmp_path):
    """Stock netx raises NotImplementedError on our 'pool' layer instead of skipping it;
    the network written without the pool loads (control)."""
    with_pool = random_network("conv", False, 31)
    write_network(with_pool, tmp_path / "pool.net")
    write_network(random_network("conv_nopool", False, 31), tmp_path / "nopool.net")
    assert len(stock_network(tmp_path / "nopool.net").layers) == 4
    with pytest.raises(NotImplementedError, match="pool"):
        stock_network(tmp_path / "pool.net")
