"""Hand-computed traces of Loihi's integer LIF, checked against ``lif_step`` and Lava.

Every expected number below is written out by hand from the equations in
:class:`snn2loihi.ir.NeuronSpec` (the comments show the arithmetic), so these tests pin
the arithmetic itself, not just agreement between two implementations. Each trace is
then checked three ways:

(a) ``snn2loihi.neuron.fixed_point.lif_step`` step by step;
(b) a real Lava process (``LIF`` for hard reset, ``LIFSoftReset`` for soft reset) driven
    by a ``RingBuffer`` source under ``Loihi2SimCfg(select_tag='fixed_pt')``, reading
    ``u``/``v`` after every step and recording spikes with a sink ``RingBuffer``;
(c) for the overflow cases, the emulator's ``overflow`` counters.

Notation: the effective threshold is ``vth_mant << 6`` and the input adds ``a_in << 6``
to u; ``x·3072 >> 12`` is the decay by ``vDecay = 1024`` (keep 3/4), rounded toward zero.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from snn2loihi.ir import DenseLayer, InputLayer, Network, NeuronSpec
from snn2loihi.neuron.fixed_point import Overflow, decay, lif_step
from snn2loihi.sim.emulator import Emulator

TWO23 = 1 << 23
TWO24 = 1 << 24
V_MAX = TWO23 - 1  # v is clipped to ±(2^23 - 1)


# --------------------------------------------------------------------------- helpers

def trace_lif_step(neuron: NeuronSpec, a_in, bias=0):
    """Run ``lif_step`` over a (K, T) input; return u, v (K, T) int64, spikes (K, T) bool,
    and the Overflow counters."""
    a_in = torch.as_tensor(np.asarray(a_in, dtype=np.int64))
    k, steps = a_in.shape
    u = torch.zeros(k, dtype=torch.int64)
    v = torch.zeros(k, dtype=torch.int64)
    bias_t = torch.as_tensor(np.broadcast_to(np.asarray(bias, dtype=np.int64), (k,)).copy())
    us, vs, ss = [], [], []
    overflow = Overflow()
    for t in range(steps):
        u, v, s = lif_step(u, v, a_in[:, t], neuron, bias_t, overflow)
        us.append(u.clone()), vs.append(v.clone()), ss.append(s.clone())
    return (torch.stack(us, -1).numpy(), torch.stack(vs, -1).numpy(), torch.stack(ss, -1).numpy(),
            overflow)


def trace_lava(neuron: NeuronSpec, a_in, bias=0):
    """Run one Lava LIF/LIFSoftReset process (fixed_pt) over a (K, T) input.

    Parameters are mapped exactly as netx maps a netx neuron group: ``du = iDecay - 1``
    (the bit-accurate model adds ``ds_offset = 1`` back), ``dv = vDecay``, ``vth =
    vThMant``, ``bias_exp = 6``. Returns u, v (K, T) read after every step and the spikes
    (K, T) recorded by a sink.
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io
    from lava.proc.lif.process import LIF

    from snn2loihi.processes import LIFSoftReset

    a_in = np.asarray(a_in, dtype=np.int32)
    k, steps = a_in.shape
    proc_cls = LIFSoftReset if neuron.soft_reset else LIF
    lif = proc_cls(shape=(k,), du=neuron.i_decay - 1, dv=neuron.v_decay, vth=neuron.vth_mant,
                   bias_mant=np.broadcast_to(np.asarray(bias, dtype=np.int32), (k,)).copy(),
                   bias_exp=6)
    source = io.source.RingBuffer(data=a_in)
    sink = io.sink.RingBuffer(shape=(k,), buffer=steps)
    source.s_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    us, vs = [], []
    try:
        for _ in range(steps):
            source.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            us.append(np.asarray(lif.u.get()).astype(np.int64).copy())
            vs.append(np.asarray(lif.v.get()).astype(np.int64).copy())
        spikes = np.asarray(sink.data.get()).astype(bool)
    finally:
        source.stop()
    return np.stack(us, -1), np.stack(vs, -1), spikes


def spikes_at(steps: int, *indices) -> np.ndarray:
    out = np.zeros(steps, dtype=bool)
    out[list(indices)] = True
    return out


# --------------------------------------------------------------------------- hand traces
# Each case: neuron, input (K, T), bias, expected u, expected v (after reset), spikes.

CASES = {}

# A. Hard reset, u flushed every step (iDecay 4096), vDecay 1024, vth 10 (640), input 3.
#    u = 3 << 6 = 192 every step.
#    v1 = 0 + 192                        = 192
#    v2 = 192·3072>>12 = 144   + 192     = 336
#    v3 = 336·3072>>12 = 252   + 192     = 444
#    v4 = 444·3072>>12 = 333   + 192     = 525
#    v5 = 525·3072>>12 = 393   + 192     = 585   (393.75 truncated)
#    v6 = 585·3072>>12 = 438   + 192     = 630   (438.75 truncated)
#    v7 = 630·3072>>12 = 472   + 192     = 664 > 640: spike, v = 0
#    v8.. repeats from v1: 192, 336, 444
CASES["hard_leaky"] = dict(
    neuron=NeuronSpec("CUBA", i_decay=4096, v_decay=1024, vth_mant=10),
    a_in=[[3] * 10], bias=0,
    u=[[192] * 10],
    v=[[192, 336, 444, 525, 585, 630, 0, 192, 336, 444]],
    s=[spikes_at(10, 6)])

# B. The same neuron with a soft reset: at v7 = 664 the threshold is subtracted, v = 24.
#    v8  = 24·3072>>12  = 18  + 192 = 210
#    v9  = 210·3072>>12 = 157 + 192 = 349   (157.5)
#    v10 = 349·3072>>12 = 261 + 192 = 453   (261.75)
#    v11 = 453·3072>>12 = 339 + 192 = 531   (339.75)
#    v12 = 531·3072>>12 = 398 + 192 = 590   (398.25)
#    v13 = 590·3072>>12 = 442 + 192 = 634   (442.5; 634 <= 640, no spike)
#    v14 = 634·3072>>12 = 475 + 192 = 667 > 640: spike, v = 27
CASES["soft_leaky"] = dict(
    neuron=NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=1024, vth_mant=10),
    a_in=[[3] * 14], bias=0,
    u=[[192] * 14],
    v=[[192, 336, 444, 525, 585, 630, 24, 210, 349, 453, 531, 590, 634, 27]],
    s=[spikes_at(14, 6, 13)])

# C. Non-leaky integrate-and-fire (vDecay 0), input 4 → +256 per step, vth 10 (640).
#    Soft reset: 256, 512, 768>640 → 128, 384, 640 (= threshold: NO spike, the test is
#    strict), 896 → 256, 512, 768 → 128, 384.
#    Hard reset (second neuron of the pair is a separate process): 256, 512, 768 → 0, ...
CASES["soft_if"] = dict(
    neuron=NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=10),
    a_in=[[4] * 9], bias=0,
    u=[[256] * 9],
    v=[[256, 512, 128, 384, 640, 256, 512, 128, 384]],
    s=[spikes_at(9, 2, 5, 7)])
CASES["hard_if"] = dict(
    neuron=NeuronSpec("LOIHI", i_decay=4096, v_decay=0, vth_mant=10),
    a_in=[[4] * 9], bias=0,
    u=[[256] * 9],
    v=[[256, 512, 0, 256, 512, 0, 256, 512, 0]],
    s=[spikes_at(9, 2, 5, 8)])

# D. Current leak with rounding toward zero: iDecay 1024 keeps 3/4 of u, vDecay 4096
#    flushes v (v = u), one input pulse. Neuron 0 gets -10, neuron 1 gets +10.
#    u1 = ∓640; u2 = 640·3072>>12 = 480; u3 = 360; u4 = 270; u5 = 202 (202.5; for the
#    negative neuron -202, NOT floor's -203); u6 = 151 (151.5 → -151).
#    vth 100 (6400) is never reached.
CASES["current_leak_rounding"] = dict(
    neuron=NeuronSpec("CUBA", i_decay=1024, v_decay=4096, vth_mant=100),
    a_in=[[-10, 0, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0]], bias=0,
    u=[[-640, -480, -360, -270, -202, -151], [640, 480, 360, 270, 202, 151]],
    v=[[-640, -480, -360, -270, -202, -151], [640, 480, 360, 270, 202, 151]],
    s=[np.zeros(6, bool), np.zeros(6, bool)])

# E. Bias only (no input): bias 2 → +128 per step (exponent 6), vDecay 2048 (half),
#    vth 3 (192), hard reset.
#    v1 = 128; v2 = 64 + 128 = 192 (= threshold, no spike); v3 = 96 + 128 = 224 → spike,
#    v = 0; then 128, 192, 0 again.
CASES["bias_hard"] = dict(
    neuron=NeuronSpec("CUBA", i_decay=4096, v_decay=2048, vth_mant=3),
    a_in=[[0] * 6], bias=2,
    u=[[0] * 6],
    v=[[128, 192, 0, 128, 192, 0]],
    s=[spikes_at(6, 2, 5)])

# F. 24-bit wrap of u: no current decay (iDecay 0), v flushed (v = u), vth 131071 never
#    reached. Input ±100000 → ±6,400,000 per step.
#    u1 = 6,400,000
#    u2 = 12,800,000 > 2^23 → 12,800,000 - 16,777,216 = -3,977,216
#    u3 = -3,977,216 + 6,400,000 = 2,422,784
#    u4 = 8,822,784 > 2^23 → -7,954,432
#    u5 = -1,554,432;  u6 = 4,845,568
#    The negative neuron mirrors it (u <= -2^23 wraps up by 2^24).
#    Third neuron: input 131072 → u = 2^23 exactly, which Lava does NOT wrap (its test
#    is u > 2^23); v = 2^23 is then clipped to 2^23 - 1 and spikes (> 131071 << 6).
_W = [6_400_000, -3_977_216, 2_422_784, -7_954_432, -1_554_432, 4_845_568]
CASES["current_wrap"] = dict(
    neuron=NeuronSpec("CUBA", i_decay=0, v_decay=4096, vth_mant=131071),
    a_in=[[100_000] * 6, [-100_000] * 6, [131_072, 0, 0, 0, 0, 0]], bias=0,
    u=[_W, [-w for w in _W], [TWO23] * 6],
    v=[_W, [-w for w in _W], [0] * 6],
    s=[np.zeros(6, bool), np.zeros(6, bool), np.ones(6, bool)])

# G. Clip of v: u flushed, v not leaky (vDecay 0), vth 131071 (8,388,544).
#    Neuron 0, input -100000: v1 = -6,400,000; v2 = -12,800,000 → clipped -8,388,607;
#    v3 = -8,388,607 - 6,400,000 → clipped again.
#    Neuron 1, input +70000 (u = 4,480,000), soft reset:
#    v1 = 4,480,000; v2 = 8,960,000 → clipped to 8,388,607 > 8,388,544 → spike,
#    v = 8,388,607 - 8,388,544 = 63 (without the clip it would be 571,456);
#    v3 = 4,480,063; v4 = 8,960,063 → clipped → spike → 63.
CASES["voltage_clip_soft"] = dict(
    neuron=NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=131071),
    a_in=[[-100_000] * 4, [70_000] * 4], bias=0,
    u=[[-6_400_000] * 4, [4_480_000] * 4],
    v=[[-6_400_000, -V_MAX, -V_MAX, -V_MAX], [4_480_000, 63, 4_480_063, 63]],
    s=[np.zeros(4, bool), spikes_at(4, 1, 3)])

#: Expected Overflow counts of lif_step for the overflow cases.
EXPECTED_OVERFLOW = {
    "current_wrap": Overflow(current_wraps=4, voltage_clips=6),   # u2, u4 of two neurons; v of neuron 3
    "voltage_clip_soft": Overflow(current_wraps=0, voltage_clips=5),  # 3 negative + 2 positive
}


def _as_arrays(case):
    return (np.asarray(case["u"], dtype=np.int64), np.asarray(case["v"], dtype=np.int64),
            np.asarray(case["s"], dtype=bool))


# --------------------------------------------------------------------------- tests

def test_decay_rounds_toward_zero():
    """``decay`` truncates toward zero for both signs (Lava's sign·(|x| >> 12)), not floor."""
    x = torch.tensor([-270, 270, -1, 1, 0, -4096], dtype=torch.int64)
    # 270·3072/4096 = 202.5 → ±202; ±1·3072/4096 = 0.75 → 0; -4096·0.75 = -3072.
    assert decay(x, 1024).tolist() == [-202, 202, 0, 0, 0, -3072]
    assert decay(x, 4096).tolist() == [0] * 6          # iDecay 4096 flushes
    assert decay(x, 0).tolist() == x.tolist()          # iDecay 0 keeps everything


@pytest.mark.parametrize("name", sorted(CASES))
def test_lif_step_matches_hand_trace(name):
    """lif_step reproduces the hand-computed u, v and spike sequence of each case."""
    case = CASES[name]
    u, v, s, overflow = trace_lif_step(case["neuron"], case["a_in"], case["bias"])
    eu, ev, es = _as_arrays(case)
    np.testing.assert_array_equal(u, eu, err_msg=f"{name}: u")
    np.testing.assert_array_equal(v, ev, err_msg=f"{name}: v")
    np.testing.assert_array_equal(s, es, err_msg=f"{name}: spikes")
    expected = EXPECTED_OVERFLOW.get(name, Overflow())
    assert (overflow.current_wraps, overflow.voltage_clips) == \
        (expected.current_wraps, expected.voltage_clips), f"{name}: overflow counters"


@pytest.mark.parametrize("name", sorted(CASES))
def test_lava_process_matches_hand_trace(name):
    """Lava's own fixed-point LIF (or our LIFSoftReset) produces the same hand-computed
    u, v and spikes: the written-out numbers are Lava's arithmetic, wrap and clip included."""
    case = CASES[name]
    u, v, s = trace_lava(case["neuron"], case["a_in"], case["bias"])
    eu, ev, es = _as_arrays(case)
    np.testing.assert_array_equal(u, eu, err_msg=f"{name}: Lava u")
    np.testing.assert_array_equal(v, ev, err_msg=f"{name}: Lava v")
    np.testing.assert_array_equal(s, es, err_msg=f"{name}: Lava spikes")


def test_soft_and_hard_reset_differ():
    """Sanity of the fixtures themselves: the soft and hard traces of case A/B diverge right
    after the first spike (v = 24 vs v = 0), so a backend that ignored the reset type
    would fail one of the two cases."""
    hard = trace_lif_step(CASES["hard_leaky"]["neuron"], [[3] * 8])[1][0]
    soft = trace_lif_step(CASES["soft_leaky"]["neuron"], [[3] * 8])[1][0]
    assert hard[6] == 0 and soft[6] == 24
    assert list(hard[:6]) == list(soft[:6])


def _input_neuron_network(neuron: NeuronSpec, k: int) -> Network:
    # The input neuron receives x directly; a harmless dense layer follows it.
    return Network([InputLayer((k,), neuron),
                    DenseLayer(np.ones((1, k), dtype=np.int64) * 2,
                               NeuronSpec("CUBA", i_decay=4096, v_decay=4096, vth_mant=1000))])


@pytest.mark.parametrize("name", ["current_wrap", "voltage_clip_soft"])
def test_emulator_reports_overflow(name):
    """The emulator, fed the overflow cases through an input neuron, spikes as the hand
    trace says and counts exactly the u wraps and v clips of that trace in ``overflow``."""
    case = CASES[name]
    a_in = np.asarray(case["a_in"], dtype=np.int64)
    net = _input_neuron_network(case["neuron"], a_in.shape[0])
    result = Emulator(net).run(a_in[None], record_all=True)
    np.testing.assert_array_equal(result.spikes[0][0].astype(bool), _as_arrays(case)[2])
    expected = EXPECTED_OVERFLOW[name]
    assert result.overflow.current_wraps == expected.current_wraps
    assert result.overflow.voltage_clips == expected.voltage_clips


def test_emulator_reports_no_overflow_in_range():
    """A run that stays inside 24 bits reports zero wraps and clips (the counter is not
    always-on)."""
    case = CASES["soft_leaky"]
    net = _input_neuron_network(case["neuron"], 1)
    result = Emulator(net).run(np.asarray(case["a_in"])[None], record_all=True)
    assert result.spikes[0].sum() == 2
    assert (result.overflow.current_wraps, result.overflow.voltage_clips) == (0, 0)


def test_training_neuron_saturates_the_voltage_like_the_chip():
    """The fixed-point training neuron (fused loop and step-by-step reference) clips v to
    24 bits as Loihi does, so a long negative drive does not bank an unbounded debt.

    Integers (vth = 131071 << 6 = 8_388_544, u = a_in << 6): three steps of -6_400_000
    pin v at -V_MAX; five of +4_480_000 then reach -3_908_607, 571_393, 5_051_393 and
    9_531_393 → clipped to V_MAX > vth: one spike at step 6 (v = 63), then 4_480_063.
    Without the clip v would still be -1_280_000 at step 6 and 3_200_000 at step 7: no spike.
    """
    from snn2loihi.neuron.soft_lif import Neuron

    spec = NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=131071)
    a_in = np.array([[-100_000] * 3 + [70_000] * 5])                 # (K = 1 neuron, T = 8)
    _, v, spikes, _ = trace_lif_step(spec, a_in)
    assert spikes[0].nonzero()[0].tolist() == [6]
    assert v[0, :3].tolist() == [-6_400_000, -V_MAX, -V_MAX] and v[0, 6:].tolist() == [63, 4_480_063]
    neuron = Neuron(131071 / 64, current_decay=1.0, voltage_decay=0.0, reset="soft", scale=64).double()
    z = torch.as_tensor(a_in[None] / 64, dtype=torch.float64)    # (N, K, T); a_in << 6 in units of s_scale = 4096
    np.testing.assert_array_equal(neuron(z)[0].numpy().astype(bool), spikes)
    np.testing.assert_array_equal(neuron.forward_reference(z)[0].numpy().astype(bool), spikes)


@pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None,
                    reason="no C++ compiler or ninja: only the PyTorch loop exists here")
@pytest.mark.parametrize("decays,soft,dtype,magnitude,with_bias", [
    ((4096, 0), True, torch.int32, 40, True),          # the vectorized integrate-and-fire case
    ((4096, 0), False, torch.int32, 40, False),
    ((1024, 512), True, torch.int64, 40, True),
    ((0, 100), False, torch.int64, 40, True),
    ((4096, 0), True, torch.int64, 150_000, True),     # u wraps and v clips at 24 bits
    ((2000, 3000), True, torch.int64, 150_000, False),
])
def test_compiled_integer_loop_equals_lif_step(decays, soft, dtype, magnitude, with_bias):
    """The emulator's compiled chunk loop is ``lif_step`` applied step by step: same spikes,
    states and overflow counts."""
    from snn2loihi.neuron import cpu_kernel
    from snn2loihi.neuron.fixed_point import ACT_SHIFT, BIAS_EXP, STATE_LIMIT, VTH_SHIFT

    kernel = cpu_kernel.compiled()
    assert kernel is not None
    neuron = NeuronSpec("CUBA_SOFT" if soft else "CUBA", i_decay=decays[0], v_decay=decays[1], vth_mant=200)
    may_overflow = magnitude > 1000
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(-magnitude, magnitude + 1, (12, 3, 50), generator=gen).to(dtype)
    bias = torch.randint(-300, 300, (3, 50), generator=gen).to(dtype) if with_bias else 0
    v0 = torch.randint(-5000, 5000, (3, 50), generator=gen).to(dtype)
    u, v, overflow, reference = torch.zeros_like(v0), v0.clone(), Overflow(), []
    for t in range(a.shape[0]):
        u, v, s = lif_step(u, v, a[t], neuron, bias, overflow, may_overflow)
        reference.append(s)
    u_c, v_c = torch.zeros_like(v0), v0.clone()
    bias_shifted = bias << BIAS_EXP if with_bias else torch.empty(0, dtype=dtype)
    spikes = torch.full(a.shape, 7.0)
    wraps, clips = kernel.lif_integer(a, u_c, v_c, bias_shifted, spikes, *decays, 4096, ACT_SHIFT,
                                      200 << VTH_SHIFT, soft, may_overflow, STATE_LIMIT)
    assert torch.equal(spikes, torch.stack(reference).float())
    assert torch.equal(u_c, u.to(dtype)) and torch.equal(v_c, v.to(dtype))
    assert (wraps, clips) == (overflow.current_wraps, overflow.voltage_clips)
    assert spikes.any() and (not may_overflow or (wraps > 0 and clips > 0))


@pytest.mark.parametrize("kind,soft,input_neuron,seed", [("dense", True, True, 1), ("conv", True, False, 3),
                                                          ("conv", False, True, 5)])
def test_emulator_loops_agree(kind, soft, input_neuron, seed, monkeypatch):
    """The emulator's two neuron loops (compiled, and ``lif_step`` per step) give the same
    spikes at every layer; the tests against Lava run whichever is active."""
    from conftest import random_input, random_network
    from snn2loihi.neuron import cpu_kernel

    net = random_network(kind, soft, seed, input_neuron)
    x = random_input(net, n=5, steps=40, seed=seed)  # more steps than one time chunk
    results = []
    for kernel in ("torch", "auto"):
        monkeypatch.setenv(cpu_kernel.ENV, kernel)
        results.append(Emulator(net).run(x, record_all=True, batch_size=3))
    for layer, spikes in results[0].spikes.items():
        assert spikes.any()
        np.testing.assert_array_equal(spikes, results[1].spikes[layer])
