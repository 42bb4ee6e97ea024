"""Time-folded synapses against slayer's own 3-D-convolution synapses: the same weighted
input bit for bit on spikes, the same gradients, and a time-major memory layout."""
import pytest
import torch
from lava.lib.dl.slayer.synapse import layer as slayer_synapse

from snn2loihi.blocks import synapse
from snn2loihi.neuron.soft_lif import Neuron

HOOK = Neuron(1.0, scale=64).quantize_8bit


def _pair(ours_cls, slayer_cls, *args, **kwargs):
    torch.manual_seed(0)
    ours = ours_cls(*args, pre_hook_fx=HOOK, **kwargs)
    theirs = slayer_cls(*args, pre_hook_fx=HOOK, **kwargs)
    with torch.no_grad():
        ours.weight.copy_(torch.randn_like(ours.weight) if ours.weight.requires_grad else ours.weight)
        theirs.weight.copy_(ours.weight)
    return ours, theirs


def _compare(ours, theirs, shape):
    spikes = (torch.rand(shape) < 0.4).float()
    x_ours, x_theirs = spikes.clone().requires_grad_(), spikes.clone().requires_grad_()
    z_ours, z_theirs = ours(x_ours), theirs(x_theirs)
    assert z_ours.shape == z_theirs.shape
    assert torch.equal(z_ours, z_theirs)
    assert z_ours.abs().sum() > 0
    upstream = torch.randn_like(z_ours)
    (z_ours * upstream).sum().backward()
    (z_theirs * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-5, atol=1e-5)
    if ours.weight.requires_grad:
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-4)
    return z_ours


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "padding": 1}, {"padding": 2, "dilation": 2},
                                    {"groups": 2, "padding": (1, 0)}])
def test_conv_equals_slayer(kwargs):
    ours, theirs = _pair(synapse.Conv, slayer_synapse.Conv, 4, 6, 3, **kwargs)
    z = _compare(ours, theirs, (3, 4, 9, 8, 5))
    assert z[..., 2].is_contiguous()  # time-major memory: one step is one block


def test_dense_equals_slayer():
    ours, theirs = _pair(synapse.Dense, slayer_synapse.Dense, 40, 7)
    _compare(ours, theirs, (3, 40, 6))


@pytest.mark.parametrize("kernel,shape", [(2, (2, 3, 8, 8, 4)), (2, (2, 3, 7, 9, 4)), (3, (2, 2, 9, 6, 3))])
def test_pool_equals_slayer(kernel, shape):
    """Including slayer's bottom/right zero padding of odd sizes."""
    ours, theirs = _pair(synapse.Pool, slayer_synapse.Pool, kernel)
    for syn in (ours, theirs):
        with torch.no_grad():
            syn.weight.fill_(0.25)
    _compare(ours, theirs, shape)


def test_pool_with_unequal_taps_takes_the_convolution():
    ours, theirs = _pair(synapse.Pool, slayer_synapse.Pool, 2)
    for syn in (ours, theirs):
        with torch.no_grad():
            syn.weight.copy_(torch.tensor([0.25, 0.5, -0.75, 1.0]).reshape(syn.weight.shape))
    _compare(ours, theirs, (2, 3, 8, 6, 4))


def test_chained_layers_fold_without_copies():
    """A time-major output feeds the next synapse's folded batch as a view."""
    conv = synapse.Conv(2, 3, 3, padding=1)
    z = conv((torch.rand(2, 2, 5, 5, 4) < 0.5).float())
    assert synapse.fold_time(z).data_ptr() == z.data_ptr()
    assert torch.equal(synapse.unfold_time(synapse.fold_time(z), 4), z)


def test_temporal_kernels_are_refused():
    with pytest.raises(ValueError, match="temporal kernel"):
        synapse.synaptic_current(torch.zeros(1, 2, 3), torch.zeros(4, 2, 1, 1, 2))


@pytest.mark.parametrize("kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((2, 3), (2, 3), (0, 0)),
                                                   ((3, 3), (2, 2), (1, 1))])
def test_window_sum_equals_avg_pool_with_divisor_one(kernel, stride, padding):
    """Tiles (the strided-slice path) and overlapping windows (avg_pool2d) alike: the window
    sums and their gradient (gradcheck in float64)."""
    x = torch.rand(3, 2, 6, 12, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.avg_pool2d(x, kernel, stride, padding, divisor_override=1)
    torch.testing.assert_close(synapse.window_sum(x, kernel, stride, padding), expected)
    assert torch.autograd.gradcheck(lambda t: synapse.window_sum(t, kernel, stride, padding), (x,))
