"""Firing windows and the converter's hold: the IR/netx field, a hand-computed trace on the
emulator, Lava and the torch neuron, backends equal at every layer of a held ResNet, and
the deviation error gone when every layer holds for the whole window (research notes §4.3)."""
from __future__ import annotations

from contextlib import ExitStack

import h5py
import numpy as np
import pytest
import torch

from models.ann import resnet
from snn2loihi.conversion import convert, converter
from snn2loihi.conversion.activation import ClipFloorShift
from snn2loihi.conversion.errors import ConversionError
from snn2loihi.conversion.network import absolute_weights, front_loaded, held_counts, synaptic_input
from snn2loihi.errors import NetxFormatError
from snn2loihi.ir import DenseLayer, InputLayer, Network, NeuronSpec
from snn2loihi.netx import read_network, write_network
from snn2loihi.neuron.soft_lif import Neuron
from snn2loihi.sim.emulator import Emulator
from snn2loihi.sim.lava_runner import run_lava

SOFT = NeuronSpec("CUBA_SOFT", 4096, 0, 100)


def windowed_pair() -> Network:
    """Input (2,) → two IF neurons (threshold 100) reading input 0 with weights 55 and 30,
    both allowed to spike only at steps 3, 4, 5 of a sample."""
    return Network([InputLayer((2,)), DenseLayer(np.array([[55, 0], [30, 0]]), SOFT, fire_window=(3, 6))])


#: Input 0 spikes at every step; synapses deliver one step later, so from step 1 the
#: neurons get 55 and 30 per step. Weight 55: v = 55, 110 (no spike: step 2 is before the
#: window), 165 → spike (65), 120 → spike (20), 75, 130 (step 6: window closed), 185.
#: Weight 30: 30, 60, 90, 120 → spike at 4 (20), 50, 80, 110 (closed).
EXPECTED = {0: [3, 4], 1: [4]}


@pytest.mark.parametrize("backend", ["emulator", "lava"])
def test_fire_window_by_hand(backend):
    net = windowed_pair()
    x = np.zeros((2, 2, 8), dtype=np.int64)
    x[:, 0, :] = 1
    result = Emulator(net).run(x) if backend == "emulator" else run_lava(net, x)
    for sample in range(2):  # the window counts steps from each sample's start
        for neuron, steps in EXPECTED.items():
            assert np.flatnonzero(result.output[sample, neuron]).tolist() == steps


def test_torch_neuron_fire_window_by_hand():
    """The same trace on the torch neuron in float (threshold 1, input 0.55 and 0.30)."""
    neuron = Neuron(threshold=1.0, fixed_point=False)
    neuron.fire_window = (3, 6)
    z = torch.tensor([[0.0] + [0.55] * 7, [0.0] + [0.30] * 7]).unsqueeze(0)
    s = neuron(z)[0]
    for k, steps in EXPECTED.items():
        assert torch.nonzero(s[k]).flatten().tolist() == steps


def test_fire_window_validation_netx_round_trip_and_reader_errors(tmp_path):
    for bad in ((3, 3), (-1, 4), (1, 2, 3), (0.5, 2)):
        with pytest.raises(ValueError, match="fire_window"):
            DenseLayer(np.array([[1]]), SOFT, fire_window=bad)
    with pytest.raises(ValueError, match="soft-reset"):
        DenseLayer(np.array([[1]]), NeuronSpec("CUBA", 4096, 0, 100), fire_window=(0, 2))
    net = windowed_pair()
    assert net.latency == 3  # the layer answers when its window opens, not one step after the input
    path = tmp_path / "held.net"
    write_network(net, path)
    assert read_network(path).layers[1].fire_window == (3, 6)
    with h5py.File(path, "a") as f:
        del f["layer/1/fireWindow"]
        f["layer/1/fireWindow"] = np.array([5, 2])
    with pytest.raises(NetxFormatError, match=r"held.net.*layer 1.*fire_window must satisfy 0 <= first < stop"):
        read_network(path)


def _resnet20(**kwargs) -> torch.nn.Module:
    """ResNet-20 of width 2 (``kwargs`` to :func:`models.ann.resnet`) from seed 0, with BN
    statistics away from the identity, as a trained net has."""
    torch.manual_seed(0)
    ann = resnet(20, 2, **kwargs).eval()
    for m in ann.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return ann


def _held_resnet(hold: int, timesteps: int, **options):
    ann = _resnet20()
    x = torch.rand(8, 1, 8, 8)
    options = {"rule": "tuned", "block": "restructured", **options}
    return convert(ann, x[:5], timesteps, hold=hold, **options), x[5:]


def test_held_resnet_backends_agree_at_every_layer():
    """Restructured ResNet-20 with a hold of 2 (with its two weight groups per layer): the
    exported layers open their windows at d·3; torch in device timing equals the emulator
    at every layer and step, the aligned torch run equals each layer's window, Lava equals
    the emulator, and nothing fires outside a window."""
    hold, t = 2, 5
    result, images = _held_resnet(hold, t)
    net, _ = result.export()
    windows = [layer.fire_window for layer in net.synaptic_layers]
    assert windows == [(d * (hold + 1), d * (hold + 1) + t) for d in range(1, len(windows) + 1)]
    assert net.latency == result.latency == len(windows) * (hold + 1)
    x = result.encode(images, pad=True)
    emulated = Emulator(net).run(x, record_all=True)
    snn = result.snn.double()
    with torch.no_grad():
        _, device = snn(torch.as_tensor(x, dtype=torch.float64), record=True, timing="device")
        _, aligned = snn(torch.as_tensor(result.encode(images), dtype=torch.float64), record=True, timing="aligned")
    for index, spikes in emulated.spikes.items():
        first, stop = net.layers[index].fire_window
        assert spikes[..., :first].sum() == 0 and spikes[..., stop:].sum() == 0
        np.testing.assert_array_equal(device[index].numpy().astype(np.uint8).reshape(spikes.shape), spikes,
                                      err_msg=f"layer {index}")
        np.testing.assert_array_equal(aligned[index].numpy().astype(np.uint8).reshape(spikes[..., :t].shape),
                                      spikes[..., first:stop], err_msg=f"layer {index}")
    assert emulated.output.sum() > 0
    np.testing.assert_array_equal(emulated.output.sum(-1).reshape(len(images), -1), result.counts(images))
    lava = run_lava(net, x[:2], record_all=True)
    for index, spikes in lava.spikes.items():
        np.testing.assert_array_equal(spikes, emulated.spikes[index][:2], err_msg=f"layer {index}")


@pytest.mark.parametrize("fixed_point", [False, True])
def test_holding_for_the_whole_window_leaves_no_deviation_error(fixed_point):
    """With hold ≥ T a neuron has all of its charge Q before it may fire, so it fires
    exactly clip(⌈Q⌉ - 1, 0, T) spikes: the deviation part of every layer's error is 0.
    Without a hold the same network has deviation error (control)."""
    t = 6
    held, _ = _held_resnet(t, t, fixed_point=fixed_point)
    free, _ = _held_resnet(0, t, fixed_point=fixed_point)
    assert all(layer.deviation == 0 for layer in held.report.layers)
    assert max(layer.deviation for layer in free.report.layers) > 0.05


def _qcfs_resnet(levels: int) -> torch.nn.Module:
    """:func:`_resnet20` with clip-floor-shift activations of L levels whose clips are
    spread over 0.5 … 2, as a trained net has."""
    ann = _resnet20(activation="qcfs", levels=levels)
    for m in ann.modules():
        if isinstance(m, ClipFloorShift):
            m.clip.data.uniform_(0.5, 2.0)
    return ann


def test_a_qcfs_resnet_at_t_equal_to_its_levels_with_a_full_hold_is_the_ann():
    """Clip-floor-shift ResNet (L = 4, clips spread over 0.5 … 2) on inputs of the 1/L grid,
    converted at T = L with hold T (float): a held IF neuron with θ = λ and u0 = θ/2 fires
    floor(z·T/λ + 1/2) clipped to [0, T], which is L·h(z)/λ, so every hidden node equals the
    ANN (error 0) with the clip rule and with tuned (it keeps c = 1), and the output layer
    fires the ANN's logits z rounded on its own grid: clip(floor(z·T/θ + 1/2), 0, T).
    Max-norm takes θ = the calibration maximum, below λ where no neuron saturates: not exact."""
    levels = 4
    ann = _qcfs_resnet(levels)
    x = torch.floor(torch.rand(8, 1, 8, 8) * levels + 0.5) / levels
    with torch.no_grad():
        logits = ann(x).numpy()
    for rule in ("clip", "tuned"):
        result = convert(ann, x, levels, rule=rule, block="restructured", hold=levels, fixed_point=False)
        *hidden, output = result.report.layers
        assert max(layer.total for layer in hidden) < 1e-6, rule
        assert all(layer.scale == 1 for layer in hidden), rule
        expected = np.clip(np.floor(logits * levels / output.threshold + 0.5), 0, levels)
        np.testing.assert_array_equal(result.counts(x, fixed_point=False, dtype=torch.float64), expected,
                                      err_msg=rule)
    max_norm = convert(ann, x, levels, rule="max", block="restructured", hold=levels, fixed_point=False)
    assert max(layer.total for layer in max_norm.report.layers[:-1]) > 0.1


def test_tuning_and_bias_correction_leave_the_lossless_qcfs_nodes_alone():
    """Analog images (off the 1/L grid: the 4-level input code errs), L = 4, full hold:
    at T = L tuned + corrected keeps c = 1 and the ANN's bias on every clip-floor-shift node,
    and still corrects the output's bias; at T = 8 > L it keeps c = 1 and corrects them; at
    T = 2 < L it tunes and corrects them."""
    ann = _qcfs_resnet(4)
    x = torch.rand(16, 1, 8, 8)

    def corrected_and_tuned(t: int) -> tuple[set, set, set]:
        """(QCFS node names, nodes whose operators bias correction changed, nodes with c ≠ 1)."""
        plain, corrected = (convert(ann, x, t, rule="tuned", block="restructured", hold=t, correct=c,
                                    fixed_point=False) for c in (False, True))
        qcfs = {node.name for node in corrected.graph.nodes if node.levels}
        changed = {new.name for new, old in zip(corrected.graph.nodes, plain.graph.nodes)
                   if any(not torch.equal(a.weight, b.weight)
                          or (a.bias is not None and not torch.equal(a.bias, b.bias)) for a, b in zip(new.ops, old.ops))}
        return qcfs, changed, {n for n, c in corrected.scales.items() if c != 1}

    qcfs, changed, tuned = corrected_and_tuned(4)
    assert qcfs and not changed & qcfs and "output" in changed and not tuned & qcfs
    qcfs, changed, tuned = corrected_and_tuned(8)
    assert changed & qcfs and "output" in changed and not tuned & qcfs
    qcfs, changed, tuned = corrected_and_tuned(2)
    assert changed & qcfs and tuned & qcfs


@pytest.mark.parametrize("fixed_point", [False, True])
def test_windowed_neuron_fast_path_equals_the_reference_loop(fixed_point):
    """Integrate-and-fire neurons with a window run as a sum up to the window and the fused
    loop inside it; spikes equal the step-by-step reference for windows at the start, in
    the middle, to the end and of one step."""
    torch.manual_seed(0)
    neuron = Neuron(threshold=1.0, fixed_point=fixed_point, scale=256)
    neuron.v_init = torch.rand(6) * 0.5
    z = torch.round(torch.randn(4, 6, 5, 5, 40) * 0.4 * 256) / 256
    for window in [(0, 40), (5, 30), (12, 40), (39, 40)]:
        neuron.fire_window = window
        with torch.no_grad():
            fast = neuron(z)
            reference = neuron.forward_reference(z)
        assert fast[..., :window[0]].sum() == 0 and fast[..., window[1]:].sum() == 0 and fast.sum() > 0
        torch.testing.assert_close(fast, reference, rtol=0, atol=0)


def test_window_count_by_hand():
    """A neuron holding charge Q fires while v > θ, subtracting θ: ⌈Q/θ⌉ - 1 spikes, at most
    the window. Fixed point on the chip's grid (θ = 64·64 = 4096 units at scale 64): one
    unit above a multiple of θ is one more spike; a charge that could have clipped v is
    declined."""
    neuron = Neuron(threshold=1.0, fixed_point=False)
    charge = torch.tensor([[-3.0, 0.5, 1.0, 1.5, 2.0, 2.25, 40.0]])
    assert neuron.window_count(charge, 16).tolist() == [[0, 0, 0, 1, 1, 2, 16]]
    neuron.v_init = torch.full((7,), 0.75)  # added to the charge
    assert neuron.window_count(charge, 16).tolist() == [[0, 1, 1, 2, 2, 2, 16]]
    fixed = Neuron(threshold=1.0, fixed_point=True)
    unit = 1 / fixed.s_scale
    charge = torch.tensor([[1.0, 1.0 + unit, 2.0, 2.0 + unit, 3.0 - unit]], dtype=torch.float64)
    exact = (charge.clamp(min=0), (-charge).clamp(min=0))
    assert fixed.window_count(charge, 8, exact).tolist() == [[0, 1, 1, 2, 2]]
    # the input's partial sums and currents lie in [-loss, gain]: they may reach ±(2^23 - 1)
    # units, not one unit more, and v_init adds to them
    limit = torch.tensor(((1 << 23) - 1) * unit, dtype=torch.float64)
    assert fixed.window_count(charge, 8, (limit, limit)) is not None
    assert fixed.window_count(charge, 8, (limit + unit, exact[1])) is None
    assert fixed.window_count(charge, 8, (exact[0], limit + unit)) is None
    fixed.v_init = torch.full((5,), unit)
    assert fixed.window_count(charge, 8, (limit, exact[1])) is None
    assert fixed.window_count(charge, 8, (exact[0], limit)) is not None
    fixed.v_init = -fixed.v_init
    assert fixed.window_count(charge, 8, (exact[0], limit)) is None


@pytest.mark.parametrize("block", ["restructured", "standard"])
@pytest.mark.parametrize("fixed_point", [True, False])
def test_held_network_runs_on_counts(block, fixed_point):
    """With hold ≥ T every block fires its N spikes at the first N steps of its window (the
    recorded device-timing trains equal ``front_loaded`` counts at every block), so the count
    run gives the step-by-step counts at every block, in fixed point and in float64."""
    t = 4
    result, _ = _held_resnet(t, t, block=block)
    images = torch.rand(16, 1, 8, 8)
    snn = result.snn.double()
    snn.set_fixed_point(fixed_point)
    assert snn.collapsible
    x = torch.as_tensor(result.encode(images, pad=True), dtype=torch.float64)
    with torch.no_grad():
        _, trains = snn(x, record=True, timing="device")
    _, counts = snn.count_forward(torch.as_tensor(result.encode(images), dtype=torch.float64).sum(-1), record=True)
    for index, block_ in enumerate(snn.blocks):
        if index and hasattr(block_, "synapse"):
            first = block_.fire_window[0]
            torch.testing.assert_close(front_loaded(counts[index], first, x.shape[-1]).double(), trains[index],
                                       rtol=0, atol=0, msg=f"block {index}")
    assert counts[-1].sum() > 0
    np.testing.assert_array_equal(result.counts(images, fixed_point=fixed_point, dtype=torch.float64),
                                  result.counts(images, fixed_point=fixed_point, dtype=torch.float64, collapse=False))


def test_count_run_steps_a_block_that_might_clip_and_needs_a_full_hold():
    """A block whose initial voltage sits next to the 24-bit limit (its v clips on the
    way): the count run steps that block alone on its sources' front-loaded trains and
    still gives the step-by-step counts at every block, in fixed point. Where that block
    reads the rate-coded input (order unknown), the count run declines (None) and
    ``counts`` runs step by step. With hold < T counts do not determine the output and
    count_forward refuses."""
    t = 4
    result, images = _held_resnet(t, t)
    snn = result.snn.double()
    x = torch.as_tensor(result.encode(images, pad=True), dtype=torch.float64)
    counts_in = torch.as_tensor(result.encode(images), dtype=torch.float64).sum(-1)
    for index in (3, 1):
        block = snn.blocks[index]
        block.neuron.v_init = torch.full_like(block.neuron.v_init, ((1 << 23) - 8) / block.neuron.s_scale)
        with torch.no_grad():
            _, trains = snn(x, record=True, timing="device")
        held = snn.count_forward(counts_in, record=True)
        if index == 1:
            assert held is None
            break
        assert trains[index][..., block.fire_window[0]].sum() > 0  # it fires: the clip shapes its count
        for k, count in enumerate(held[1]):
            if k and hasattr(snn.blocks[k], "synapse"):
                torch.testing.assert_close(count, trains[k].sum(-1), rtol=0, atol=0, msg=f"block {k}")
    np.testing.assert_array_equal(result.counts(images), result.counts(images, collapse=False))
    short, _ = _held_resnet(t - 1, t)
    assert not short.snn.collapsible
    with pytest.raises(ConversionError, match="hold >= timesteps"):
        short.snn.count_forward(counts_in)


def _group_weights(block) -> list:
    """The quantized weights of a block's synapse groups (its synapse, then its skip)."""
    weights = [block.synapse.pre_hook_fx(block.synapse.weight)]
    if getattr(block, "skip", None) is not None:
        weights.append(block.skip.synapse.pre_hook_fx(block.skip.synapse.weight))
    return weights


@pytest.fixture
def window_count_answers(monkeypatch) -> list:
    """Every answer of ``Neuron.window_count`` (None: declined), in call order."""
    answers = []
    window_count = Neuron.window_count

    def spy(self, *args, **kwargs):
        answers.append(window_count(self, *args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(Neuron, "window_count", spy)
    return answers


def test_count_run_near_the_24_bit_limit_takes_the_exact_bound(window_count_answers):
    """A block whose initial voltage leaves less room to the 24-bit limit than its static
    bound T·ΣW⁺ but more than its actual input W⁺·N: the count run takes the exact bound
    from the |W| pass and still equals the step-by-step run."""
    t = 4
    result, images = _held_resnet(t, t)
    block = result.snn.blocks[3]
    static = t * float(sum(w.clamp(min=0).flatten(1).sum(1) for w in _group_weights(block)).max())
    scale = block.neuron.s_scale
    block.neuron.v_init = torch.full_like(block.neuron.v_init, ((1 << 23) - 1 - round(static * scale / 2)) / scale)
    x = torch.as_tensor(result.encode(images), dtype=torch.float32).sum(-1)
    assert result.snn.count_forward(x) is not None
    assert sum(answer is None for answer in window_count_answers) == 1  # the static bound declined, the exact one did not
    np.testing.assert_array_equal(result.counts(images), result.counts(images, collapse=False))


def test_count_run_near_the_limit_takes_the_partial_sums_of_front_loaded_trains(window_count_answers):
    """A block whose initial voltage leaves less room to the 24-bit limit than the
    order-free bound W⁺·N but more than the largest partial sum its sources' front-loaded
    trains actually reach (the cumulative sum of its input in the recorded step-by-step
    run): the static and |W| bounds decline, the partial sums settle it, and the count run
    still equals the step-by-step run. One unit less room than that peak, every bound
    declines and the block is stepped alone (:func:`held_steps`), still equal."""
    t = 4
    result, images = _held_resnet(t, t)
    snn = result.snn.double()
    index = 3
    block = snn.blocks[index]
    x = torch.as_tensor(result.encode(images, pad=True), dtype=torch.float64)
    with torch.no_grad():
        _, trains = snn(x, record=True, timing="device")
        skip = trains[block.skip.source] if getattr(block, "skip", None) is not None else None
        steps = synaptic_input(block, trains[index - 1], skip)
        peak = steps.cumsum(-1).amax(-1)  # the largest partial sum each neuron reaches
        frames = [trains[index - 1].sum(-1, keepdim=True), None if skip is None else skip.sum(-1, keepdim=True)]
        signed = synaptic_input(block, *frames)[..., 0]
        with ExitStack() as stack:
            for synapse in [block.synapse] + ([block.skip.synapse] if skip is not None else []):
                stack.enter_context(absolute_weights(synapse))
            reach = synaptic_input(block, *frames)[..., 0]
    one_step = sum(w.clamp(min=0).flatten(1).sum(1) for w in _group_weights(block)).reshape(1, -1, 1, 1)
    needed = float(torch.maximum(peak, one_step).max())
    order_free = float(((reach + signed) / 2).max())
    assert needed < order_free  # the case this test is about
    scale = block.neuron.s_scale
    room = round((needed + order_free) / 2 * scale)
    block.neuron.v_init = torch.full_like(block.neuron.v_init, ((1 << 23) - 1 - room) / scale)
    assert snn.count_forward(torch.as_tensor(result.encode(images), dtype=torch.float64).sum(-1)) is not None
    assert sum(answer is None for answer in window_count_answers) == 2  # static and |W| declined, the partial sums did not
    np.testing.assert_array_equal(result.counts(images, dtype=torch.float64),
                                  result.counts(images, dtype=torch.float64, collapse=False))
    block.neuron.v_init = torch.full_like(block.neuron.v_init, ((1 << 23) - round(needed * scale)) / scale)
    snn.double()
    del window_count_answers[:]
    stepped = snn.count_forward(torch.as_tensor(result.encode(images), dtype=torch.float64).sum(-1))
    assert sum(answer is None for answer in window_count_answers) == 3  # every bound declined
    with torch.no_grad():
        np.testing.assert_array_equal(stepped.numpy(), snn(x, timing="device").sum(-1).numpy())


@pytest.mark.parametrize("block", ["restructured", "standard"])
def test_conversion_on_counts_equals_the_step_by_step_pass(block, monkeypatch):
    """With hold ≥ T the converter's calibration pass runs on counts; forcing every batch
    through the step-by-step fallback (on the trains the counts stand for) chooses the same
    thresholds and measures the same errors."""
    fast, images = _held_resnet(4, 4, block=block, correct=True)
    monkeypatch.setattr(converter, "held_counts", lambda *args, **kwargs: None)
    slow, _ = _held_resnet(4, 4, block=block, correct=True)
    assert fast.thresholds == slow.thresholds
    assert [layer.total for layer in fast.report.layers] == [layer.total for layer in slow.report.layers]
    np.testing.assert_array_equal(fast.counts(images), slow.counts(images))


# --------------------------------------------------------------------------- readout window

def test_readout_window_runs_alike_on_every_backend():
    """A readout window of R = 4T: the output layer fires over R steps (every other layer
    over T) and the run is R - T steps longer. The count run, the step-by-step device and
    aligned runs, the emulator and Lava give the same output spikes, up to R per neuron."""
    t, r = 4, 16
    result, _ = _held_resnet(t, t, readout=r)
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    net, _ = result.export()
    assert [stop - first for first, stop in (layer.fire_window for layer in net.synaptic_layers)] == \
        [t] * (len(net.synaptic_layers) - 1) + [r]
    assert net.padding(t) == result.snn.padding == result.latency + r - t and net.latency == result.latency
    x = result.encode(images, pad=True)
    assert x.shape[-1] == result.latency + r
    emulated = Emulator(net).run(x)
    snn = result.snn.double()
    with torch.no_grad():
        device = snn(torch.as_tensor(x, dtype=torch.float64), timing="device")
        aligned = snn(torch.as_tensor(result.encode(images), dtype=torch.float64), timing="aligned")
    np.testing.assert_array_equal(device.numpy().astype(np.uint8), emulated.output)
    counts = emulated.output.sum(-1)
    np.testing.assert_array_equal(aligned.sum(-1).numpy(), counts)
    np.testing.assert_array_equal(result.counts(images), counts)
    np.testing.assert_array_equal(result.counts(images, collapse=False), counts)
    assert counts.max() > t
    np.testing.assert_array_equal(run_lava(net, x[:2]).output, emulated.output[:2])


def test_readout_reads_the_held_charge_in_finer_steps():
    """In float with the max rule, a readout of R steps changes the output layer alone:
    every other block's counts equal those of the R = T network, and the output fires
    ``clip(⌈(Q - ½)·R/T + ½⌉ - 1, 0, R)`` for the charge Q (threshold units, u0 = ½) that
    the R = T output holds: the same charge read at R/T times the resolution. Its
    quantization error falls within 1/(2R) (the R = T output's does not)."""
    t, r = 4, 16
    options = {"rule": "max", "fixed_point": False}
    plain, _ = _held_resnet(t, t, **options)
    fine, _ = _held_resnet(t, t, readout=r, **options)
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    x = torch.as_tensor(plain.encode(images), dtype=torch.float64).sum(-1)
    records = []
    for result in (plain, fine):
        snn = result.snn.double()
        snn.set_fixed_point(False)
        records.append(snn.count_forward(x, record=True)[1])
    out = plain.snn.output_block
    for index in range(out):
        if records[0][index] is not None:
            torch.testing.assert_close(records[1][index], records[0][index], rtol=0, atol=0, msg=f"block {index}")
    block = plain.snn.blocks[out]
    skip = getattr(block, "skip", None)
    _, a = held_counts(block, records[0][out - 1], None if skip is None else records[0][skip.source], t)
    charge = a + block.neuron.v_init
    expected = (torch.ceil((charge - 0.5) * (r / t) + 0.5) - 1).clamp(0, r)
    torch.testing.assert_close(records[1][out], expected, rtol=0, atol=0)
    assert expected.max() > t
    assert fine.report.layers[-1].quantization <= 1 / (2 * r) < plain.report.layers[-1].quantization


def test_readout_window_needs_a_full_hold():
    images = torch.rand(4, 1, 8, 8)
    ann = resnet(20, 2).eval()
    with pytest.raises(ConversionError, match="readout=16 needs readout >= timesteps .* and hold >= timesteps"):
        convert(ann, images, 4, hold=3, readout=16)
    with pytest.raises(ConversionError, match="readout=2 needs readout >= timesteps"):
        convert(ann, images, 4, hold=4, readout=2)


def test_less_v_headroom_buys_finer_weights_and_the_backends_still_agree():
    """``convert(headroom=h)``: a held layer keeps h·(window + max Σ|W|) thresholds of v
    free of the 24-bit clip (:func:`~snn2loihi.conversion.build.choose_scale`). With the
    max rule (thresholds from the ANN alone, so both conversions share them) half the
    default headroom never lowers a layer's neuron scale and doubles some (at T = 64 the
    output layer's, the one with the largest row sums); the count run still equals the
    step-by-step run and the emulator, spike count for spike count."""
    t = 64
    wide, images = _held_resnet(t, t, rule="max")
    tight, _ = _held_resnet(t, t, rule="max", headroom=0.5)
    assert wide.thresholds == tight.thresholds
    scales = [[float(b.neuron.s_scale) for b in r.snn.blocks if hasattr(b, "synapse")] for r in (wide, tight)]
    assert all(b in (a, 2 * a) for a, b in zip(*scales))
    assert any(b == 2 * a for a, b in zip(*scales))
    counts = tight.counts(images, dtype=torch.float64)
    np.testing.assert_array_equal(counts, tight.counts(images, dtype=torch.float64, collapse=False))
    net, _ = tight.export()
    emulated = Emulator(net).run(tight.encode(images, pad=True)).output.sum(-1).reshape(len(images), -1)
    np.testing.assert_array_equal(emulated, counts)
    with pytest.raises(ConversionError, match="headroom > 0"):
        _held_resnet(t, t, headroom=0)
