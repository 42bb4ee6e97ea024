"""Training-side guarantees: the trained model's spikes are the chip's spikes.

The soft-reset LIF neuron trains with Loihi's arithmetic; these tests check that a
quantized, exported, re-read network gives exactly the spikes of the torch model (float64)
at every layer, that blocks export themselves like the quantizer does, that the
quantization report counts what it changed, and that training learns.
"""
import h5py
import numpy as np
import pytest
import torch
from lava.lib.dl.slayer.block import cuba

from snn2loihi.blocks.network import SpikingNetwork
from snn2loihi.blocks.soft_lif import Conv, Dense, Flatten, Pool
from snn2loihi.data.digits import load_digits_split
from snn2loihi.data.encoding import pad_time, rate_encode
from snn2loihi.errors import QuantizationError
from snn2loihi.ir import ConvLayer, DenseLayer, PoolLayer
from snn2loihi.netx import read_network, write_network
from snn2loihi.netx.reader import _read_layer
from snn2loihi.quantize import quantize_network
from snn2loihi.sim.emulator import Emulator
from snn2loihi.training.loop import evaluate, fit
from snn2loihi.training.losses import spike_count_cross_entropy


def _model(reset: str, current_decay: float, voltage_decay: float, seed: int = 0) -> SpikingNetwork:
    torch.manual_seed(seed)
    p = {"threshold": 1.0, "current_decay": current_decay, "voltage_decay": voltage_decay, "reset": reset}
    return SpikingNetwork((2, 6, 6), [Conv(p, 2, 8, 3, padding=1, weight_scale=4), Pool(p, 2),
                                      Flatten(), Dense(p, 8 * 3 * 3, 5, weight_scale=3)])


@pytest.mark.parametrize("reset,current_decay,voltage_decay", [
    ("soft", 1.0, 0.0),      # integrate-and-fire, the demo's neuron
    ("soft", 0.5, 0.1),      # leaky current and voltage: exercises the round-toward-zero decay
    ("hard", 0.25, 0.05),    # stock CUBA
])
def test_exported_file_reproduces_trained_model_at_every_layer(tmp_path, reset, current_decay, voltage_decay):
    """Torch forward (float64, fixed-point mode) == emulator on the re-read netx file,
    layer by layer, once Lava's latency (one step per synapse layer) is accounted for."""
    model = _model(reset, current_decay, voltage_decay).double()
    rng = np.random.default_rng(1)
    x = (rng.random((6, 2, 6, 6, 20)) < 0.4).astype(np.uint8)
    with torch.no_grad():
        _, outputs = model(torch.as_tensor(x, dtype=torch.float64), record=True)
    net, _ = quantize_network(model)
    write_network(net, tmp_path / "m.net")
    net = read_network(tmp_path / "m.net")
    result = Emulator(net).run(pad_time(x, net.latency), record_all=True)
    delay = 0
    checked = 0
    for index, layer in enumerate(net.layers):
        if isinstance(layer, (ConvLayer, PoolLayer, DenseLayer)):
            delay += 1
            expected = outputs[index].numpy().astype(np.uint8)
            got = result.spikes[index][..., delay:delay + x.shape[-1]]
            assert expected.sum() > 0, f"layer {index} is silent: the comparison would be vacuous"
            np.testing.assert_array_equal(got, expected, err_msg=f"layer {index}")
            checked += 1
    assert checked == 3


def test_block_export_hdf5_matches_quantizer(tmp_path):
    """Each block's own export_hdf5 writes the layer the quantizer produces."""
    model = _model("soft", 1.0, 0.0)
    net, _ = quantize_network(model)
    with h5py.File(tmp_path / "blocks.h5", "w") as handle:
        for i, block in enumerate(model.blocks):
            block.export_hdf5(handle.create_group(str(i)))
    with h5py.File(tmp_path / "blocks.h5", "r") as handle:
        shape = None
        for i, layer in enumerate(net.layers):
            read = _read_layer(handle[str(i)], shape, first=(i == 0))
            assert type(read) is type(layer)
            if hasattr(layer, "weight"):
                np.testing.assert_array_equal(read.weight, layer.weight)
                assert read.neuron == layer.neuron
            shape = read.out_shape


def test_quantization_report_counts_clipping_and_rounding():
    """Weights beyond [-256, 254]/scale are clipped and counted; on-grid weights are not rounded."""
    model = _model("soft", 1.0, 0.0)
    dense = model.blocks[-1].synapse
    with torch.no_grad():
        dense.weight.zero_()
        dense.weight[0, 0] = 10.0          # 10·64 = 640 > 254 → clipped
        dense.weight[1, 1] = -10.0         # clipped at -256
        dense.weight[2, 2] = 3 / 64        # between grid points (step 2/64) → rounded
        dense.weight[3, 3] = 4 / 64        # exactly on the grid
    net, report = quantize_network(model)
    record = report.layers[-1]
    assert record.weights == 5 * 72
    assert record.weights_clipped == 2
    assert record.weights_rounded == 1
    assert record.max_rounding_error == pytest.approx(1 / 64)
    w = net.layers[-1].weight
    assert (w[0, 0], w[1, 1], w[3, 3]) == (254, -256, 4)
    assert w[2, 2] in (2, 4)
    assert record.threshold == (1.0, 64)


def test_threshold_beyond_17_bits_is_an_error():
    """A threshold mantissa that does not fit the chip raises instead of wrapping."""
    p = {"threshold": 5000.0, "current_decay": 1.0, "voltage_decay": 0.0}
    model = SpikingNetwork((4,), [Dense(p, 4, 2)])
    with pytest.raises(QuantizationError, match="vThMant"):
        quantize_network(model)


def test_slayer_cuba_blocks_export_a_stock_netx_file(tmp_path):
    """slayer's own hard-reset CUBA blocks go through the same quantizer and give a file
    that unmodified netx builds."""
    from snn2loihi.lava_imports import netx

    p = {"threshold": 1.0, "current_decay": 0.5, "voltage_decay": 0.1}
    model = SpikingNetwork((1, 6, 6), [cuba.Conv(p, 1, 4, 3, padding=1), Flatten(),
                                       cuba.Dense(p, 4 * 36, 3)])
    net, _ = quantize_network(model)
    assert [layer.neuron.kind for layer in net.layers if hasattr(layer, "neuron") and layer.neuron] == ["CUBA"] * 2
    write_network(net, tmp_path / "cuba.net")
    stock = netx().hdf5.Network(net_config=str(tmp_path / "cuba.net"))
    assert len(stock.layers) == 2


def test_float_mode_removes_weight_quantization():
    """set_fixed_point(False) runs the unquantized network; True restores the chip grid."""
    model = _model("soft", 1.0, 0.0)
    conv = model.blocks[1].synapse
    with torch.no_grad():
        conv.weight.fill_(0.3 / 64)   # off the 2/64 grid: rounds to 0 in fixed point
    x = torch.ones((1, 2, 6, 6, 4))
    model.set_fixed_point(False)
    assert conv.pre_hook_fx is None
    float_out = conv(x)
    model.set_fixed_point(True)
    fixed_out = conv(x)
    assert float_out.abs().sum() > 0 and fixed_out.abs().sum() == 0


def test_training_learns_digits():
    """Three epochs on 600 real digits beat chance (10%) by far on held-out digits."""
    data = load_digits_split(seed=0)
    x_train = rate_encode(data.x_train[:600], 8)
    x_test = rate_encode(data.x_test, 8)
    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    torch.manual_seed(0)
    model = SpikingNetwork((1, 8, 8), [Flatten(), Dense(p, 64, 10, weight_scale=2)])
    history = fit(model, x_train, data.y_train[:600], spike_count_cross_entropy, epochs=3, batch_size=32,
                  lr=1e-2, progress=False)
    assert history.loss[-1] < history.loss[0]
    assert evaluate(model, x_test, data.y_test) > 0.6
