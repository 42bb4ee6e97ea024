"""The fused time loop (one autograd node, hand-written BPTT) against the step-by-step
reference neuron: identical spikes and the same gradients, for every reset, surrogate
(STDB's spike-time dependence included), leak, arithmetic mode and reset detaching."""
import itertools
import shutil

import pytest
import torch

from snn2loihi.neuron import cpu_kernel
from snn2loihi.neuron.soft_lif import Neuron
from snn2loihi.neuron.surrogate import STDB, Exponential, Rectangular, Triangle

CASES = list(itertools.product(["soft", "hard"], [True, False],
                               [Exponential(), Triangle(), Rectangular(), STDB(), Triangle(0.75), Rectangular(0.5)],
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


@pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None,
                    reason="no C++ compiler or ninja: only the PyTorch loop exists here")
@pytest.mark.parametrize("reset,fixed_point,surrogate,decays,detach", CASES)
def test_compiled_loop_equals_torch_loop_bit_for_bit(reset, fixed_point, surrogate, decays, detach, monkeypatch):
    """The C++ loop (float32, time-major input as the time-folded synapses produce it)
    gives the PyTorch loop's spikes and gradients exactly, the triangle and rectangle
    surrogates evaluated inside its backward pass included."""
    torch.manual_seed(1)
    neuron = Neuron(1.0, *decays, reset=reset, surrogate=surrogate, fixed_point=fixed_point, detach_reset=detach)
    neuron.v_init = torch.full((5,), 0.25)
    z = (torch.rand(14, 3, 5) * 0.7).movedim(0, -1).requires_grad_()  # (N, F, T), time-major memory
    weight = torch.randn(3, 5, 14)
    results = []
    for kernel in ("cpp", "torch"):
        monkeypatch.setenv(cpu_kernel.ENV, kernel)
        spikes = neuron(z)
        (spikes * weight).sum().backward()
        results.append((spikes, z.grad))
        z.grad = None
        with torch.no_grad():  # no gradient wanted: the loop keeps no voltages, same spikes
            assert torch.equal(neuron(z), spikes)
    (spikes_cpp, grad_cpp), (spikes_torch, grad_torch) = results
    assert spikes_cpp.sum() > 0 and grad_cpp.abs().sum() > 0
    assert torch.equal(spikes_cpp, spikes_torch)
    if isinstance(surrogate, Exponential):  # the loop's own exp: within 1 ulp of PyTorch's
        torch.testing.assert_close(grad_cpp, grad_torch, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(grad_cpp, grad_torch)


@pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None,
                    reason="no C++ compiler or ninja: only the PyTorch loop exists here")
@pytest.mark.parametrize("surrogate", [Exponential(), Exponential(tau=0.3, scale=2.0)])
def test_compiled_exponential_surrogate_within_one_ulp(surrogate, monkeypatch):
    """One step, detached reset, unit output gradient: ∂L/∂z = σ(p - θ) itself. The loop's
    vectorized float32 exp against float64 exp of the same float32 argument |p - θ|/(-τθ),
    over p - θ ∈ [-100, 100]."""
    monkeypatch.setenv(cpu_kernel.ENV, "cpp")
    neuron = Neuron(1.0, surrogate=surrogate, fixed_point=False, detach_reset=True)
    z = torch.linspace(-99.0, 101.0, 20001).reshape(1, -1, 1).requires_grad_()
    neuron(z).sum().backward()
    argument = (z.detach() - 1.0).abs() / -(surrogate.tau * 1.0)  # float32, as the loop computes it
    exact = torch.exp(argument.double())
    normal = exact > 1.2e-38  # below: e^x under float32's smallest normal, which the loop flushes to 0
    relative = ((z.grad.double() / surrogate.scale - exact).abs() / exact)[normal]
    assert normal.sum() > 5_000 and relative.max() < 2 ** -23  # one ulp of float32
    assert (z.grad[~normal] < 1.2e-38 * surrogate.scale).all()


def test_unknown_kernel_choice_is_refused(monkeypatch):
    monkeypatch.setenv(cpu_kernel.ENV, "fast")
    with pytest.raises(ValueError, match="SNN2LOIHI_NEURON_KERNEL"):
        Neuron(1.0)(torch.rand(2, 3, 4))


def test_failed_build_falls_back_to_the_torch_loop(monkeypatch):
    """Without a working compiler: one warning naming the build error and the PyTorch loop
    (same spikes) under ``auto``; a clear error under ``cpp``."""
    import torch.utils.cpp_extension as cpp_extension

    z = torch.rand(2, 3, 6) * 0.8
    expected = Neuron(1.0).forward_reference(z)

    def broken(*args, **kwargs):
        raise OSError("c++: not found")

    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setattr(cpu_kernel, "_built", {})
    monkeypatch.setenv(cpu_kernel.ENV, "auto")
    with pytest.warns(RuntimeWarning, match="c\\+\\+: not found"):
        assert cpu_kernel.compiled() is None
    assert torch.equal(Neuron(1.0)(z), expected)
    monkeypatch.setenv(cpu_kernel.ENV, "cpp")
    with pytest.raises(RuntimeError, match="could not be built: OSError: c\\+\\+: not found"):
        cpu_kernel.compiled()
