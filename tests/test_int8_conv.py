"""The exact int8 convolution path of the emulator (snn2loihi/sim/int8_conv.py).

References: ``F.conv2d`` in float64 on the same integers (exact), and the emulator's float
path (``SNN2LOIHI_INT8_CONV=0``), which the Lava comparisons of test_emulator_vs_lava.py
and test_residual.py already pin to Lava.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_same_spikes, random_input, random_network
from snn2loihi.ir import ConvLayer, NeuronSpec, PoolLayer
from snn2loihi.sim import int8_conv
from snn2loihi.sim.emulator import Emulator
from snn2loihi.sim.synapses import Synapse

needs_int8 = pytest.mark.skipif(not int8_conv.available(), reason="no exact oneDNN int8 convolution here")


@pytest.mark.parametrize("weights,shift", [
    (np.array([-128, 0, 127]), 0),
    (np.array([-256, 2, 254]), 1),       # Loihi's 8-bit mixed-sign mantissas: even values
    (np.array([-512, 64, 508]), 2),
    (np.array([0, 0]), 0),
    (np.array([129, 1]), None),          # too wide, and odd: no shift fits
    (np.array([-258, 2]), None),         # -129 after the shift
])
def test_weight_shift(weights, shift):
    assert int8_conv.weight_shift(weights) == shift


@needs_int8
@pytest.mark.parametrize("stride,padding,dilation,groups,scale", [
    ((1, 1), (1, 1), (1, 1), 1, 1),
    ((2, 1), (0, 2), (1, 1), 2, 2),
    ((1, 1), (2, 2), (2, 2), 1, 2),
    ((2, 2), (0, 0), (1, 1), 6, 4),      # depthwise, as pool layers run
])
def test_int8_conv_equals_float64_conv(stride, padding, dilation, groups, scale):
    """Exact for 0/1 spikes, whatever the geometry and the power-of-two weight scale,
    including sums beyond the int16 range."""
    rng = np.random.default_rng(groups)
    channels = 48 if groups == 1 else 6
    weight = rng.integers(-128, 128, size=(6, channels // groups, 3, 3)) * scale
    weight[0] = 127 * scale  # one output channel with the largest possible positive sum
    s = torch.as_tensor(rng.random((5, channels, 11, 9)) < 0.9)
    out = int8_conv.Int8Conv(weight, stride, padding, dilation, groups)(s)
    reference = F.conv2d(s.double(), torch.as_tensor(weight, dtype=torch.float64), stride=stride,
                         padding=padding, dilation=dilation, groups=groups)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.double(), reference)
    assert reference.abs().max() > (2 ** 15 if groups == 1 else 2 ** 10)


@needs_int8
def test_synapse_takes_int8_path_only_where_exact():
    """Conv and pool synapses on 8-bit-grid weights use it; odd weights past 127 and
    graded (non-spike) inputs use the float path, with the same results."""
    neuron = NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=100)
    on_grid = ConvLayer((2, 6, 6), np.full((3, 2, 3, 3), -256), neuron, padding=1)
    off_grid = ConvLayer((2, 6, 6), np.full((3, 2, 3, 3), 129), neuron, padding=1)
    pool = PoolLayer((2, 6, 6), np.full((2, 2), 64), neuron)
    cpu = torch.device("cpu")
    assert Synapse(on_grid, cpu).int8 is not None and Synapse(pool, cpu).int8 is not None
    assert Synapse(off_grid, cpu).int8 is None
    spikes = torch.rand(4, 2, 6, 6) < 0.5
    for layer in (on_grid, off_grid, pool):
        synapse = Synapse(layer, cpu)
        fast, _ = synapse(spikes.to(torch.uint8), size=1)
        slow, _ = synapse(spikes.to(torch.float32), size=1)
        assert torch.equal(fast, slow)
    graded = torch.randint(0, 3, (4, 2, 6, 6), dtype=torch.uint8)
    a, _ = Synapse(on_grid, cpu)(graded)
    reference = F.conv2d(graded.double(), torch.full((3, 2, 3, 3), -256.0, dtype=torch.float64), padding=1)
    assert torch.equal(a.double(), reference)


@needs_int8
@pytest.mark.parametrize("soft,input_neuron,seed", [(False, False, 2), (True, False, 3), (True, True, 4)])
def test_emulator_int8_path_equals_float_path(monkeypatch, soft, input_neuron, seed):
    """Same spikes at every layer with and without the int8 path, on random conv + pool +
    flatten + dense networks (whose float path test_emulator_vs_lava.py checks against Lava)."""
    net = random_network("conv", soft, seed, input_neuron=input_neuron)
    x = random_input(net, 6, 12, seed)
    fast = Emulator(net)
    assert any(s.int8 is not None for s in fast._synapses.values())
    expected = fast.run(x, record_all=True)
    monkeypatch.setenv(int8_conv.ENV, "0")
    slow = Emulator(net)
    assert all(s.int8 is None for s in slow._synapses.values())
    assert_same_spikes(slow.run(x, record_all=True), expected)
