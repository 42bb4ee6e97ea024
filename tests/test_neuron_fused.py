"""The fused time loop (one autograd node, hand-written BPTT) against the step-by-step
reference neuron: identical spikes and the same gradients, for every reset, surrogate
(STDB's spike-time dependence included), leak, arithmetic mode and reset detaching."""
import itertools

import pytest
import torch

from snn2loihi.neuron.soft_lif import Neuron
from snn2loihi.neuron.surrogate import STDB, Exponential, Rectangular, Triangle

CASES = list(itertools.product(["soft", "hard"], [True, False],
                               [Exponential(), Triangle(), Rectangular(), STDB()],
                               [(1.0, 0.0), (0.5, 0.1)], [False, True]))


@pytest.mark.parametrize("reset,fixed_point,surrogate,decays,detach", CASES)
def test_fused_equals_reference(reset, fixed_point, surrogate, decays, detach):
    torch.manual_seed(0)
    neuron = Neuron(1.0, *decays, reset=reset, surrogate=surrogate, fixed_point=fixed_point,
                    detach_reset=detach).double()
    z = (torch.rand(3, 5, 14, dtype=torch.float64) * 0.7).requires_grad_()
    weight = torch.randn(3, 5, 14, dtype=torch.float64)
    fused = neuron(z)
    (fused * weight).sum().backward()
    grad_fused, z.grad = z.grad.clone(), None
    reference = neuron.forward_reference(z)
    (reference * weight).sum().backward()
    assert fused.sum() > 0
    assert torch.equal(fused, reference)
    torch.testing.assert_close(grad_fused, z.grad, rtol=1e-9, atol=1e-12)
    assert grad_fused.abs().sum() > 0


def test_learnable_decays_use_the_reference_path():
    """Decays with requires_grad get gradients (only the autograd reference provides them)."""
    neuron = Neuron(1.0, 0.5, 0.2, requires_grad=True)
    neuron(torch.rand(2, 4, 10) * 0.8).sum().backward()
    assert neuron.voltage_decay.grad is not None and neuron.voltage_decay.grad.abs().sum() > 0
