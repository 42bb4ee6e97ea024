"""The three training methods against the papers' formulas, computed by hand.

STDB (Rathi et al. 2020), STBP's iterative LIF, rectangular surrogate, voting and
NeuNorm (Wu et al. 2019), TET's loss, triangle surrogate and LIF (Deng et al. 2022), batch
norm folding, and the deploy path (encoder → chip → readout) bit-exact against the emulator.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snn2loihi.blocks.network import SpikingNetwork
from snn2loihi.blocks.soft_lif import Conv, Dense, Flatten, Pool
from snn2loihi.errors import QuantizationError
from snn2loihi.neuron.soft_lif import Neuron
from snn2loihi.neuron.surrogate import STDB, Rectangular, Triangle, spike
from snn2loihi.sim.emulator import Emulator
from snn2loihi.training.model import SNNClassifier, chip_scores
from snn2loihi.training.modules import BatchNormConv, Encoder, Readout
from snn2loihi.training.residual import Residual
from snn2loihi.training.spec import neuron_kwargs
from snn2loihi.training.stbp import NeuNorm, voting_mse
from snn2loihi.training.stdb import bias_free_vgg, is_average_pool, stdb_network
from snn2loihi.training.tet import sdt_loss, tet_loss

IF = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0, "reset": "soft"}


# --------------------------------------------------------------------------- surrogates

def test_rectangular_and_triangle_derivatives():
    x = torch.tensor([-1.2, -0.51, -0.49, 0.0, 0.3, 0.49, 0.51, 1.0])
    rect = Rectangular(width=1.0).derivative(x, 1.0)
    assert rect.tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert Rectangular(width=0.5).derivative(torch.tensor([0.2, 0.3]), 1.0).tolist() == [2.0, 0.0]
    tri = Triangle(gamma=1.0).derivative(x, 1.0)
    np.testing.assert_allclose(tri.numpy(), [0, 0.49, 0.51, 1.0, 0.7, 0.51, 0.49, 0], atol=1e-6)
    grid = torch.linspace(-3, 3, 60001, dtype=torch.float64)
    for gamma in (0.5, 1.0, 2.0):  # peak 1/γ at u = V_th, area 1
        d = Triangle(gamma=gamma).derivative(grid, 1.0)
        assert float(d.max()) == pytest.approx(1 / gamma)
        assert float(torch.trapezoid(d, grid)) == pytest.approx(1.0, abs=1e-6)


def test_spike_function_uses_surrogate_in_backward_only():
    x = torch.tensor([-0.3, 0.0, 0.2], requires_grad=True)
    s = spike(x, Rectangular(1.0), 1.0)
    assert s.tolist() == [0.0, 0.0, 1.0]  # strict: x = 0 does not spike
    s.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_stdb_gradient_by_hand():
    """One IF neuron (θ = 1, soft reset, detached): dΣs/dz[t'] = Σ_{t≥t'} (α/θ)e^{-βΔt_t}
    with Δt_t = t - (last spike before t), 1000 + t before the first spike."""
    neuron = Neuron(surrogate=STDB(alpha=0.3, beta=0.01), detach_reset=True, fixed_point=False, **IF)
    z = torch.tensor([[[1.5, 0.2, 0.2, 1.0, 0.1]]], requires_grad=True)
    s = neuron(z)
    assert s.flatten().tolist() == [1, 0, 0, 1, 0]     # v: 1.5→0.5, 0.7, 0.9, 1.9→0.9, 1.0 (not > 1)
    s.sum().backward()
    dt = [1000, 1, 2, 3, 1]
    g = [0.3 * math.exp(-0.01 * d) for d in dt]
    expected = [sum(g[t:]) for t in range(5)]
    np.testing.assert_allclose(z.grad.flatten().numpy(), expected, rtol=1e-6)
    assert g[1] == pytest.approx(0.297, abs=5e-4)      # the value at Δt = 1 quoted in the spec


def test_stdb_ignores_voltage_and_scales_with_threshold():
    surrogate = STDB(alpha=0.3, beta=0.01)
    dt = torch.tensor([1.0, 1.0, 50.0])
    d = surrogate.derivative(torch.tensor([-5.0, 0.1, 0.1]), 2.0, dt)
    np.testing.assert_allclose(d.numpy(), [0.15 * math.exp(-0.01), 0.15 * math.exp(-0.01), 0.15 * math.exp(-0.5)],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="dt"):
        surrogate.derivative(torch.zeros(2), 1.0)


# --------------------------------------------------------------------------- STBP

def _stbp_neuron():
    return Neuron(threshold=0.75, current_decay=1.0, voltage_decay=0.75, reset="hard",
                  surrogate=Rectangular(1.0), fixed_point=False)


def test_stbp_lif_trace_by_hand():
    """u[t+1] = k·u[t]·(1 - o[t]) + z, k = 0.25, V_th = 0.75, strict comparison."""
    s = _stbp_neuron()(torch.tensor([[[0.6, 0.6, 0.6, 0.6, 0.6]]]))
    # u: 0.6, 0.75 (not > 0.75), 0.7875 → spike, reset: 0.6, 0.75
    assert s.flatten().tolist() == [0, 0, 1, 0, 0]


def test_stbp_gradient_matches_the_papers_recursion():
    """Autograd through our neuron (reset not detached) equals the STBP recursion of
    Wu et al. for a 1-layer, 3-step network with the rectangular surrogate."""
    torch.manual_seed(0)
    s_in = torch.tensor([[1.0, 0, 1], [1, 1, 0], [0, 1, 1]])          # (F_in, T)
    w = torch.tensor([[0.5, 0.4, 0.3]], requires_grad=True)            # (1, F_in)
    c = torch.tensor([1.0, -2.0, 3.0])                                   # L = Σ_t c_t o_t
    o = _stbp_neuron()((w @ s_in)[None])[0, 0]
    (o * c).sum().backward()
    # forward by hand
    k, th = 0.25, 0.75
    z = (w.detach() @ s_in)[0].numpy()
    u, spikes, prev_u, prev_o = [], [], 0.0, 0.0
    for t in range(3):
        ut = k * prev_u * (1 - prev_o) + z[t]
        ot = float(ut > th)
        u.append(ut), spikes.append(ot)
        prev_u, prev_o = ut, ot
    assert spikes == o.tolist()
    h = [float(abs(ut - th) < 0.5) for ut in u]
    du_next, grad_w = 0.0, np.zeros(3)
    for t in reversed(range(3)):
        do = c[t].item() - du_next * k * u[t]
        du = do * h[t] + du_next * k * (1 - spikes[t])
        grad_w += du * s_in[:, t].numpy()
        du_next = du
    np.testing.assert_allclose(w.grad[0].numpy(), grad_w, rtol=1e-6)
    assert np.abs(grad_w).sum() > 0


def test_voting_mse_by_hand():
    spikes = torch.zeros(1, 6, 4)            # 3 classes × 2 voters, T = 4
    spikes[0, 0, :2] = 1                     # class 0 voters: rates 0.5, 0 → 0.25
    spikes[0, 4, :] = 1                      # class 2 voters: rates 1, 0 → 0.5
    expected = ((0.25 - 0) ** 2 + 0 + (0.5 - 1) ** 2) / 3
    assert float(voting_mse(spikes, torch.tensor([2]), 3)) == pytest.approx(expected)


def test_neunorm_update_by_hand():
    torch.manual_seed(1)
    norm = NeuNorm((2, 1, 2), decay=0.5)
    with torch.no_grad():
        norm.scale.copy_(torch.tensor([[[0.5, 1.0]], [[2.0, -1.0]]]))
    o = (torch.rand(1, 2, 1, 2, 4) < 0.5).float()
    out = norm(o)
    x, expected = np.zeros((1, 2)), np.zeros((1, 2, 1, 2, 4))
    for t in range(4):
        x = 0.5 * x + 0.5 * o[0, :, :, :, t].numpy().mean(0)       # k + v = 1, channel mean
        expected[0, :, :, :, t] = o[0, :, :, :, t].numpy() - norm.scale.detach().numpy() * x
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)
    # U = 0 is plain STBP; all-ones spikes drive x → v/(1-k) = 1; x is causal
    assert torch.equal(NeuNorm((2, 1, 2))(o), o)
    ones = NeuNorm((1, 1, 1), decay=0.8).auxiliary(torch.ones(1, 1, 1, 1, 60))
    assert float(ones[..., -1]) == pytest.approx(1.0, abs=1e-5)
    changed = o.clone()
    changed[..., 2:] = 1 - changed[..., 2:]
    np.testing.assert_array_equal(norm.auxiliary(changed)[..., :2].numpy(), norm.auxiliary(o)[..., :2].numpy())


def test_neunorm_network_refuses_export():
    net = SpikingNetwork((1, 4, 4), [Conv(IF, 1, 2, 3, padding=1), NeuNorm((2, 4, 4)), Flatten(), Dense(IF, 32, 3)])
    model = SNNClassifier(net, 3)
    with pytest.raises(QuantizationError, match="NeuNorm"):
        model.to_ir()


# --------------------------------------------------------------------------- TET

def test_tet_neuron_trace():
    """τ = 0.5, V_th = 1, hard reset: input 0.6 gives u = 0.6, 0.9, 1.05 → spike, 0 → 0.6 …"""
    n = Neuron(threshold=1.0, current_decay=1.0, voltage_decay=0.5, reset="hard", surrogate=Triangle(1.0),
               fixed_point=False)
    assert n(torch.full((1, 1, 6), 0.6)).flatten().tolist() == [0, 0, 1, 0, 0, 1]


def test_tet_loss_by_hand():
    out = torch.tensor([[[1.0, 2.0], [0.5, -1.0], [0.0, 0.3]],
                        [[-0.2, 0.1], [2.0, 1.5], [0.4, 0.4]]], requires_grad=True)   # (N=2, C=3, T=2)
    y = torch.tensor([0, 1])
    logits = out.detach().numpy()
    ce = np.mean([-(logits[n, y[n], t] - np.log(np.exp(logits[n, :, t]).sum())) for n in range(2) for t in range(2)])
    mse = np.mean((logits - 1.0) ** 2)
    assert float(tet_loss(out, y, lam=0.0)) == pytest.approx(ce, rel=1e-6)
    assert float(tet_loss(out, y, lam=0.05, phi=1.0)) == pytest.approx(0.95 * ce + 0.05 * mse, rel=1e-6)
    # ∂L/∂O(t) = (softmax(O(t)) - ŷ) / (T·N) for λ = 0
    tet_loss(out, y, lam=0.0).backward()
    soft = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = (soft - np.eye(3)[y.numpy()][:, :, None]) / 4
    np.testing.assert_allclose(out.grad.numpy(), expected, rtol=1e-5, atol=1e-7)
    # T = 1: TET = SDT
    assert float(tet_loss(out[..., :1], y, 0.0)) == pytest.approx(float(sdt_loss(out[..., :1], y)))


def test_sdt_is_at_most_tet_jensen():
    torch.manual_seed(0)
    for _ in range(50):
        out, y = torch.randn(4, 5, 3) * 3, torch.randint(0, 5, (4,))
        assert float(sdt_loss(out, y)) <= float(tet_loss(out, y, lam=0.0)) + 1e-6
    same = torch.randn(4, 5, 1).expand(4, 5, 3)
    y = torch.randint(0, 5, (4,))
    assert float(sdt_loss(same, y)) == pytest.approx(float(tet_loss(same, y, 0.0)), rel=1e-6)


# --------------------------------------------------------------------------- BN folding

def test_batchnorm_folds_exactly_into_the_deployed_block():
    torch.manual_seed(0)
    p = {"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard", "scale": 256}
    net = SpikingNetwork((2, 5, 5), [BatchNormConv(p, 2, 3, 3, padding=1), Flatten(), Readout(75, 2)]).double()
    block = net.blocks[1]
    x = (torch.rand(8, 2, 5, 5, 6, dtype=torch.float64) < 0.4).double()
    block.train()
    z = block.current(x)                                  # batch statistics over N, H, W, T
    dims = (0, 2, 3, 4)
    np.testing.assert_allclose(z.mean(dims).detach().numpy(), block.norm.bias.detach().numpy(), atol=1e-9)
    np.testing.assert_allclose(z.var(dims, unbiased=False).detach().numpy(), np.ones(3), rtol=1e-3)  # σ²/(σ²+ε)
    with torch.no_grad():
        block.norm.weight.copy_(torch.tensor([0.7, 1.3, 0.2]))
        block.norm.bias.copy_(torch.tensor([0.4, -0.3, 1.1]))
    block.eval()
    plain = block.deployable()
    np.testing.assert_array_equal(block(x).detach().numpy(), plain(x).detach().numpy())
    mantissa = (plain.synapse.bias * 256).detach().numpy()
    np.testing.assert_array_equal(mantissa, np.round(mantissa))   # on the 13-bit bias grid
    from snn2loihi.quantize import quantize_network

    layer = quantize_network(net)[0].layers[1]
    np.testing.assert_array_equal(layer.bias, mantissa.astype(np.int64))


# --------------------------------------------------------------------------- deploy path

def test_encoder_readout_model_equals_the_emulator_bit_for_bit():
    """Host encoder → chip (conv, pool, readout): torch scores (float64, fixed point) are
    exactly the readout membranes computed from the emulator's spikes."""
    torch.manual_seed(0)
    p = neuron_kwargs({"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard", "surrogate": {"name": "Triangle"}})
    encoder = Encoder(p, (1, 8, 8), 4, stride=1, padding=1)
    net = SpikingNetwork(encoder.out_shape, [Conv(p, 4, 8, 3, padding=1, stride=2, weight_scale=4),
                                             Conv(p, 8, 8, 3, padding=1, weight_scale=18), Pool(IF, 2),
                                             Flatten(), Readout(32, 3, weight_scale=2)])
    with torch.no_grad():
        encoder.synapse.weight.mul_(4)
    model = SNNClassifier(net, 3, encoder=encoder, timesteps=6).double().eval()
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out, _ = model(x)
    ir_net, _ = model.to_ir()
    assert ir_net.layers[0].neuron is not None                    # the encoder's neurons are the input layer
    result = Emulator(ir_net).run(model.chip_input(x, ir_net.latency), record_all=True)
    assert all(s.sum() > 0 for i, s in result.spikes.items() if i < len(ir_net.layers) - 1)
    expected = (model.scores(out) * net.blocks[-1].neuron.w_scale).numpy()
    np.testing.assert_array_equal(chip_scores(model, ir_net, result), expected)
    assert np.abs(expected).sum() > 0


def test_long_readout_window_sums_per_step_currents_without_a_24_bit_wrap():
    """A converted net reads out over T = 100 steps: the readout's integrated current
    passes 2^23 (the chip register wraps, the emulator counts it), but the host sums the
    per-step increments, so the scores still equal the torch fixed-point model's."""
    torch.manual_seed(0)
    net = SpikingNetwork((16,), [Dense(IF, 16, 32, weight_scale=4), Readout(32, 3, weight_scale=64)])
    with torch.no_grad():
        net.blocks[-1].synapse.weight.abs_()                       # every step adds to the total
    model = SNNClassifier(net, 3).double().eval()
    x = (torch.rand(6, 16, 100, dtype=torch.float64) < 0.8).double()
    with torch.no_grad():
        out, _ = model(x)
    ir_net, _ = model.to_ir()
    result = Emulator(ir_net).run(model.chip_input(x.numpy(), ir_net.latency), record_all=True)
    expected = (model.scores(out) * net.blocks[-1].neuron.w_scale).numpy()
    assert np.abs(expected).max() * 64 >= 1 << 23                 # the whole-window total would wrap
    assert result.overflow.current_wraps > 0
    np.testing.assert_array_equal(chip_scores(model, ir_net, result), expected)


def test_voting_output_scores_from_spike_counts():
    torch.manual_seed(0)
    net = SpikingNetwork((6,), [Dense(IF, 6, 4, weight_scale=8)])
    model = SNNClassifier(net, 2, votes=2).double().eval()
    x = (torch.rand(5, 6, 8) < 0.5).double()
    with torch.no_grad():
        out, _ = model(x)
    ir_net, _ = model.to_ir()
    result = Emulator(ir_net).run(model.chip_input(x.numpy(), ir_net.latency))
    np.testing.assert_array_equal(chip_scores(model, ir_net, result), model.scores(out).numpy())
    np.testing.assert_array_equal(model.scores(out).numpy(), out.sum(-1).reshape(5, 2, 2).sum(-1).numpy())


# --------------------------------------------------------------------------- hybrid

def test_stdb_network_prepares_a_converted_snn():
    torch.manual_seed(0)
    conv = {**IF, "threshold": 2.0, "scale": 64}
    dense = {**IF, "threshold": 1.5, "scale": 64}
    snn = SpikingNetwork((1, 4, 4), [Conv(conv, 1, 2, 3, padding=1), Pool(IF, 2), Flatten(), Dense(dense, 8, 3)])
    model = stdb_network(snn, 3, kappa=0.5, alpha=0.4, beta=0.02, dropout=0.2, timesteps=10)
    blocks = model.network.blocks
    assert blocks[1].neuron.threshold == 1.0 and blocks[2].neuron.threshold == 1.0   # conv ×κ; pool kept
    assert blocks[1].neuron.surrogate == STDB(alpha=0.4, beta=0.02) and blocks[1].neuron.detach_reset
    assert blocks[1].neuron.drop is not None and blocks[1].neuron.drop.p == 0.2
    assert isinstance(blocks[-1], Readout) and model.readout and model.timesteps == 10
    torch.testing.assert_close(blocks[1].synapse.weight, snn.blocks[1].synapse.weight)
    torch.testing.assert_close(blocks[-1].synapse.weight, snn.blocks[-1].synapse.weight)
    assert not any(p.requires_grad for n in model.network.neurons() for p in n.parameters())  # leak frozen


def test_stdb_keeps_converted_average_pools_frozen_and_unscaled():
    """The conversion writes an average pool as a depthwise conv with one constant tap per
    channel; STDB must neither scale its θ by κ nor train it (Rathi's pool has no weights)."""
    from snn2loihi.conversion import convert
    from snn2loihi.training.spec import network_from_spec, network_spec

    torch.manual_seed(0)
    ann = bias_free_vgg((1, 8, 8), 3, config=(4, "A", 6), dropout=0.0).eval()
    snn = convert(ann, torch.rand(16, 1, 8, 8), 8, split_weights=False).snn  # as hybrid_snn converts
    kinds = [is_average_pool(b) for b in snn.blocks[1:]]
    assert kinds == [False, True, False, False, False]        # conv, pool, conv, flatten, dense
    model = stdb_network(snn, 3, kappa=0.5, timesteps=8)
    conv, pool = model.network.blocks[1], model.network.blocks[2]
    assert conv.neuron.threshold == 0.5 * snn.blocks[1].neuron.threshold
    assert pool.neuron.threshold == snn.blocks[2].neuron.threshold
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert id(pool.synapse.weight) not in trainable and id(conv.synapse.weight) in trainable
    rebuilt = network_from_spec(network_spec(model.network))   # a resumed run keeps it frozen
    assert not rebuilt.blocks[2].synapse.weight.requires_grad and rebuilt.blocks[1].synapse.weight.requires_grad
    before = pool.synapse.weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()
    out, _ = model(torch.rand(4, 1, 8, 8, 8).lt(0.5).float())
    F.cross_entropy(model.scores(out), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert torch.equal(pool.synapse.weight, before)


def test_fixed_dropout_mask_is_constant_over_time():
    from snn2loihi.training.spec import neuron_kwargs

    n = Neuron(**neuron_kwargs({**IF, "dropout": {"p": 0.5, "per_step": False}}))
    n.train()
    s = n(torch.full((4, 20, 6), 1.5))                   # fires every step unless dropped
    kept = s[..., 0] > 0
    assert torch.equal(s > 0, kept[..., None].expand_as(s))
    assert 0 < kept.float().mean() < 1
    n.eval()
    assert bool((n(torch.full((4, 20, 6), 1.5)) > 0).all())


def test_residual_block_adds_identity_current_and_does_not_export():
    torch.manual_seed(0)
    p = {"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard"}
    block = Residual(p, 2, 2).double().eval()
    x = (torch.rand(3, 2, 4, 4, 5, dtype=torch.float64) < 0.5).double()
    expected = block.neuron(block.conv2.current(block.conv1(x)) + x)
    assert torch.equal(block(x), expected)
    net = SpikingNetwork((2, 4, 4), [Residual(p, 2, 4, stride=2), Flatten(), Readout(16, 2)])
    with pytest.raises(QuantizationError, match="residual"):
        SNNClassifier(net, 2).to_ir()


def test_device_timing_makes_batchnorm_biases_exact_on_the_chip():
    """Folded BN biases act from step 0 on the chip, before a deep layer's input arrives;
    device timing simulates that, so its scores equal the emulator's bit for bit (aligned
    timing does not, once the bias makes a layer fire early)."""
    torch.manual_seed(0)
    p = neuron_kwargs({"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard", "scale": 256})
    encoder = Encoder(p, (1, 6, 6), 3)
    net = SpikingNetwork(encoder.out_shape, [BatchNormConv(p, 3, 4, 3, padding=1), BatchNormConv(p, 4, 4, 3, padding=1),
                                             Flatten(), Readout(144, 3, weight_scale=4)])
    with torch.no_grad():
        encoder.synapse.weight.mul_(4)
        for block in net.blocks[1:3]:
            block.norm.bias.copy_(torch.tensor([0.8, -0.3, 1.5, 0.2]))   # 1.5: fires on bias alone
    model = SNNClassifier(net, 3, encoder=encoder, timesteps=5).double()
    model.train()
    model(torch.rand(16, 1, 6, 6, dtype=torch.float64))                     # BN running statistics
    model.eval()
    x = torch.rand(12, 1, 6, 6, dtype=torch.float64)
    ir_net, _ = model.to_ir()
    result = Emulator(ir_net).run(model.chip_input(x, ir_net.latency), record_all=True)
    assert result.spikes[1][..., :1].sum() > 0                            # a layer fired before its window
    chip = chip_scores(model, ir_net, result)
    scale = net.blocks[-1].neuron.w_scale
    model.timing = "device"
    with torch.no_grad():
        device_scores = model.scores(model(x)[0]).numpy() * scale
        model.timing = "aligned"
        aligned_scores = model.scores(model(x)[0]).numpy() * scale
    np.testing.assert_array_equal(chip, device_scores)
    assert not np.array_equal(chip, aligned_scores)
