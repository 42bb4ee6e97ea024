"""Reliability: Lava runtime failures, numeric saturation, determinism, and checkpoints.

(1) A process model that raises inside a Lava run (Lava alone then waits forever) or that
    stalls ends the run with a LavaRunError within seconds, and no process of the run is
    left (children of this process, from /proc, before and after).
(2) Numerics: quantization reports clipping per layer with counts and flags a layer whose
    largest one-step input overflows the 24-bit current; the emulator counts 24-bit current
    wraps, voltage clips and wrapped conv sums exactly as a plain-integer hand computation
    of the documented equations does, and Lava's own u and v follow the same trace; the
    CLI reports the counts; a NaN loss or gradient stops training before the update.
(3) Determinism: the same seed gives byte-identical netx files (in this process and in a
    fresh one) and identical emulator outputs whatever the batch size.
(4) Checkpoints: no ``torch.load`` without ``weights_only=True`` anywhere in the code; a
    pickle that would run code is refused without running it; a save killed half-way
    leaves the previous checkpoint intact; ``snn2loihi train`` killed with SIGKILL in the
    middle of an epoch resumes (``--resume``) to exactly the uninterrupted run's result.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from lava.proc.lif.models import PyLifModelBitAcc

from conftest import child_processes, random_input, random_network
from snn2loihi.blocks.network import SpikingNetwork
from snn2loihi.blocks.soft_lif import Conv, Dense, Flatten
from snn2loihi.cli import main
from snn2loihi.errors import CheckpointError, InputError, LavaRunError, TrainingError
from snn2loihi.ir import ConvLayer, InputLayer, Network, NeuronSpec
from snn2loihi.netx import write_network
from snn2loihi.quantize import quantize_network
from snn2loihi.sim.emulator import Emulator
from snn2loihi.sim.lava_runner import build_blocks, run_lava
from snn2loihi.training.checkpoint import load_checkpoint, save_checkpoint
from snn2loihi.training.loop import fit
from snn2loihi.training.losses import spike_count_cross_entropy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: A run that fails must end well within this; Lava alone would never end.
FAILURE_DEADLINE_S = 120


@contextlib.contextmanager
def alarm(seconds: int):
    """Fail (instead of hanging the test session) if the block takes longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# =========================================================================== (1) Lava runtime

FAIL_AT_STEP = 3


class RaisingLifModel(PyLifModelBitAcc):
    """Lava's bit-accurate LIF model that raises in ``run_spk`` at time step FAIL_AT_STEP."""

    def run_spk(self) -> None:
        if self.time_step == FAIL_AT_STEP:
            raise RuntimeError(f"injected failure at step {self.time_step}")
        super().run_spk()


class StallingLifModel(PyLifModelBitAcc):
    """Lava's bit-accurate LIF model that stops responding at time step FAIL_AT_STEP."""

    def run_spk(self) -> None:
        if self.time_step == FAIL_AT_STEP:
            time.sleep(3600)
        super().run_spk()


def _run_with_model(model_cls, layer_position: int, timeout_s=None):
    """run_lava on a 3-layer dense net whose ``layer_position``-th neuron process runs ``model_cls``."""
    from lava.magma.core.run_configs import Loihi2SimCfg

    net = random_network("dense", False, 21)
    x = random_input(net, n=2, steps=8, seed=22)
    blocks = build_blocks(net)
    target = blocks[layer_position][1].neuron
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={target: model_cls})
    return run_lava(net, x, blocks=blocks, run_cfg=cfg, timeout_s=timeout_s)


@pytest.mark.parametrize("layer_position", [1, 2], ids=["middle-layer", "last-layer"])
def test_exception_in_process_model_stops_run(layer_position):
    """A process model raising at step 3 of 16 (in the middle layer, whose successors then
    wait for it, and in the last layer) gives LavaRunError naming the exception, within
    seconds, and leaves no process of the run behind."""
    before = child_processes(os.getpid())
    start = time.monotonic()
    with alarm(FAILURE_DEADLINE_S), pytest.raises(LavaRunError, match="RuntimeError: injected failure at step 3"):
        _run_with_model(RaisingLifModel, layer_position)
    elapsed = time.monotonic() - start
    assert child_processes(os.getpid()) == before
    print(f"\nprocess-model exception → LavaRunError after {elapsed:.1f} s (build + 3 steps + teardown)")


def test_stalled_process_model_times_out():
    """A process model that stops responding is ended by the run's timeout (4 s); no
    process is left."""
    before = child_processes(os.getpid())
    start = time.monotonic()
    with alarm(FAILURE_DEADLINE_S), pytest.raises(LavaRunError, match="did not finish within 4 s"):
        _run_with_model(StallingLifModel, 1, timeout_s=4)
    assert time.monotonic() - start >= 4
    assert child_processes(os.getpid()) == before


def test_lava_runs_after_a_failure():
    """After a failed run the next run in the same process works and is correct (the
    failure left no state behind): it equals the emulator spike for spike."""
    with alarm(FAILURE_DEADLINE_S), pytest.raises(LavaRunError):
        _run_with_model(RaisingLifModel, 1)
    net = random_network("dense", False, 21)
    x = random_input(net, n=2, steps=8, seed=22)
    with alarm(FAILURE_DEADLINE_S):
        result = run_lava(net, x)
    expected = Emulator(net).run(x).output
    assert expected.sum() > 0
    np.testing.assert_array_equal(result.output, expected)


def test_bad_input_shape_never_starts_lava():
    """An input of the wrong shape is refused before any Lava process starts."""
    net = random_network("dense", False, 21)
    before = child_processes(os.getpid())
    with pytest.raises(InputError, match=r"expected \(N, 20, T\)"):
        run_lava(net, np.zeros((2, 19, 8), np.int64))
    assert child_processes(os.getpid()) == before


# =========================================================================== (2) numerics

def test_quantization_reports_clipping_and_saturation_per_layer():
    """Two layers with weights beyond the 8-bit grid: each layer's record counts its own
    clipped weights (hand count of |w·64| beyond [-256, 254]); the layer whose largest
    one-step input Σ|W|·64 reaches 2^23 is flagged, with the hand-computed value, and the
    summary prints every count."""
    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    torch.manual_seed(0)
    model = SpikingNetwork((1, 4, 4), [Conv(p, 1, 3, 3, padding=1), Flatten(), Dense(p, 48, 600),
                                       Dense(p, 600, 2)])
    rng = np.random.default_rng(0)
    conv_w = rng.normal(0, 3, size=(3, 1, 3, 3, 1))       # w·64 beyond the grid for |w| > ~4
    dense_w = np.zeros((600, 48))
    dense_w[:5, :5] = 9.0                                  # 25 clipped at 254
    dense_w[5, 5] = -7.0                                   # 1 clipped at -256
    readout_w = np.full((2, 600), 3.5)                     # 3.5·64 = 224: on the grid
    readout_w[1] = 0.1
    with torch.no_grad():
        model.blocks[1].synapse.weight.copy_(torch.as_tensor(conv_w))
        model.blocks[3].synapse.weight.copy_(torch.as_tensor(dense_w).reshape(600, 48, 1, 1, 1))
        model.blocks[4].synapse.weight.copy_(torch.as_tensor(readout_w).reshape(2, 600, 1, 1, 1))
    _, report = quantize_network(model)
    records = {r.name: r for r in report.layers}
    conv, dense, readout = records["1:conv"], records["3:dense"], records["4:dense"]
    f32 = lambda w: np.asarray(w, np.float32).astype(np.float64) * 64  # noqa: E731 - torch keeps float32
    assert conv.weights_clipped == int(((f32(conv_w) > 254) | (f32(conv_w) < -256)).sum()) > 0
    assert dense.weights_clipped == 26 and readout.weights_clipped == 0
    # Σ|W| per neuron, << 6: conv 9 taps; dense 5 x 254; readout 600 x 224 = 134400 → 8601600 ≥ 2^23
    assert dense.max_input_per_step == 5 * 254 * 64 and not dense.may_saturate
    assert readout.max_input_per_step == 600 * 224 * 64 == 8601600 and readout.may_saturate
    summary = report.summary()
    assert f"{conv.weights_clipped} clipped" in summary and "26 clipped" in summary
    assert "4:dense: 1200 weights, 0 clipped" in summary and "MAY SATURATE" in summary


def hand_lif_trace(a_in: list, vth_mant: int) -> tuple[list, list, int, int]:
    """u, v per step and the wrap/clip counts of one neuron with no decays (iDecay = vDecay = 0),
    in plain Python integers, from docs/netx_format.md: u += a << 6, wrapped to 24 bits;
    v += u, clipped to ±(2^23 - 1); spike when v > vth << 6 (never here)."""
    u = v = wraps = clips = 0
    us, vs = [], []
    for a in a_in:
        u += a << 6
        assert abs(u) != 1 << 23, "the wrap boundary itself: choose other weights"
        if u > 1 << 23 or u < -(1 << 23):
            u = (u + (1 << 23)) % (1 << 24) - (1 << 23)
            wraps += 1
        v += u
        if abs(v) > (1 << 23) - 1:
            v = int(np.sign(v)) * ((1 << 23) - 1)
            clips += 1
        assert v <= vth_mant << 6
        us.append(u)
        vs.append(v)
    return us, vs, wraps, clips


#: Output channels of the saturating conv: all 20 taps carry this weight.
SATURATION_WEIGHTS = [254, 200, -256, 60]
SATURATION_STEPS = 40


def saturating_network() -> Network:
    """(1, 1, 20) spikes → conv 1x20 → 4 neurons, no decays, threshold 2^23 (never reached)."""
    weight = np.repeat(np.array(SATURATION_WEIGHTS)[:, None, None, None], 20, axis=3)
    neuron = NeuronSpec("CUBA", i_decay=0, v_decay=0, vth_mant=1 << 17)
    return Network([InputLayer((1, 1, 20)), ConvLayer((1, 1, 20), weight, neuron)])


def test_emulator_counts_saturation_like_hand_computation(tmp_path, capsys):
    """All 20 inputs spike every step: channel c receives a = 20·w_c from step 1 on. The
    emulator's counts of current wraps and voltage clips (sample 1 all-ones, sample 2
    silent) equal the plain-integer hand computation; ``snn2loihi simulate`` prints them."""
    net = saturating_network()
    x = np.zeros((2, 1, 1, 20, SATURATION_STEPS), np.int64)
    x[0] = 1
    wraps = clips = 0
    for w in SATURATION_WEIGHTS:
        _, _, n_wraps, n_clips = hand_lif_trace([0] + [20 * w] * (SATURATION_STEPS - 1), 1 << 17)
        wraps, clips = wraps + n_wraps, clips + n_clips
    assert wraps >= 3 and clips > 40, "the case must saturate both registers"
    result = Emulator(net).run(x)
    assert (result.overflow.current_wraps, result.overflow.voltage_clips) == (wraps, clips)
    assert result.conv_wraps == 0 and result.output.sum() == 0
    write_network(net, tmp_path / "sat.net")
    np.save(tmp_path / "x.npy", x)
    assert main(["simulate", str(tmp_path / "sat.net"), "--input", str(tmp_path / "x.npy"), "--no-pad",
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert f"{wraps} current wraps, {clips} voltage clips, 0 wrapped conv sums" in capsys.readouterr().out


def test_lava_states_follow_the_hand_trace():
    """Lava's own u and v, read after every step of the saturating network, equal the hand
    trace of every channel: Lava wraps u and clips v where the emulator counts them."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    net = saturating_network()
    (_, block), = build_blocks(net)
    source = io.source.RingBuffer(data=np.ones((20, 1, 1, SATURATION_STEPS), np.int32))  # (W, H, C, T)
    source.s_out.connect(block.inp)
    us, vs = [], []
    try:
        with alarm(FAILURE_DEADLINE_S):
            for _ in range(SATURATION_STEPS):
                source.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
                us.append(np.asarray(block.neuron.u.get()).reshape(-1).astype(np.int64))
                vs.append(np.asarray(block.neuron.v.get()).reshape(-1).astype(np.int64))
    finally:
        source.stop()
    for c, w in enumerate(SATURATION_WEIGHTS):
        hand_u, hand_v, _, _ = hand_lif_trace([0] + [20 * w] * (SATURATION_STEPS - 1), 1 << 17)
        assert [int(u[c]) for u in us] == hand_u, f"channel {c}: u"
        assert [int(v[c]) for v in vs] == hand_v, f"channel {c}: v"


def test_conv_sum_wraps_counted():
    """A conv sum of 33000 taps of weight 255 (8,415,000 > 2^23) wraps to 8,415,000 - 2^24.
    The one active sample spikes in all T = 3 steps; the sums of steps 0 and 1 arrive (one
    step later) inside the window, the last one after it: 2 wrapped sums counted. The neuron
    sees a negative input, so it never spikes (unwrapped, it would at once)."""
    weight = np.full((1, 1, 1, 33000), 255)
    net = Network([InputLayer((1, 1, 33000)),
                   ConvLayer((1, 1, 33000), weight, NeuronSpec("CUBA", 4096, 0, 100))])
    x = np.zeros((2, 1, 1, 33000, 3), np.int64)
    x[1] = 1
    result = Emulator(net).run(x)
    assert result.conv_wraps == 2
    assert result.output.sum() == 0


def _nan_model() -> SpikingNetwork:
    torch.manual_seed(0)
    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    return SpikingNetwork((12,), [Dense(p, 12, 4, weight_scale=2)])


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nan_stops_training_before_the_update(where):
    """The loss (or only a gradient) turns NaN at the third batch: ``fit`` raises
    TrainingError with a one-line message, and the weights are those before that batch
    (finite, not updated with NaN)."""
    model = _nan_model()
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12, 6)) < 0.5).astype(np.float32)
    y = rng.integers(0, 4, size=40)
    calls, snapshot = [0], {}

    def loss_fn(out, labels):
        loss = spike_count_cross_entropy(out, labels)
        calls[0] += 1
        if calls[0] == 3:
            snapshot.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            if where == "loss":
                return loss * float("nan")
            w = model.blocks[1].synapse.weight
            return loss + 0.0 * (w.flatten()[0] * 0.0).sqrt()  # finite loss, d/dw sqrt(0) = inf → NaN
        return loss

    with pytest.raises(TrainingError) as info:
        fit(model, x, y, loss_fn, epochs=1, batch_size=8, lr=0.1, progress=False)
    assert "non-finite at batch 3" in str(info.value) and "\n" not in str(info.value)
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshot[key]), f"{key} changed after the NaN batch"
        assert torch.isfinite(value.float()).all()


# =========================================================================== (3) determinism

def export_trained(seed: int, path: str) -> None:
    """Train a small conv net for one epoch from ``seed`` on seeded random spikes, quantize
    it and write it to ``path`` (also run as a script in a fresh process by a test)."""
    torch.manual_seed(seed)
    p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    model = SpikingNetwork((1, 6, 6), [Conv(p, 1, 4, 3, padding=1, weight_scale=3), Flatten(),
                                       Dense(p, 4 * 36, 3, weight_scale=3)])
    rng = np.random.default_rng(100)
    x = (rng.random((48, 1, 6, 6, 8)) < 0.3).astype(np.float32)
    y = rng.integers(0, 3, size=48)
    fit(model, x, y, spike_count_cross_entropy, epochs=1, batch_size=16, lr=0.05, seed=seed, progress=False)
    net, _ = quantize_network(model)
    write_network(net, path)


def _sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_same_seed_gives_byte_identical_files_and_outputs(tmp_path):
    """train → quantize → export twice with seed 3 gives byte-identical HDF5 files (h5py
    stores no timestamps: ``track_times`` is off by default), also when a fresh Python
    process does it; seed 4 gives a different file (the comparison can fail). The emulator
    gives identical spikes on repeated runs and for batch sizes 1 and 256."""
    from snn2loihi.netx import read_network

    export_trained(3, tmp_path / "a.net")
    time.sleep(1.1)  # a timestamp, if one were stored, would now differ
    export_trained(3, tmp_path / "b.net")
    export_trained(4, tmp_path / "c.net")
    assert _sha256(tmp_path / "a.net") == _sha256(tmp_path / "b.net")
    assert _sha256(tmp_path / "a.net") != _sha256(tmp_path / "c.net")
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"from test_reliability import export_trained; export_trained(3, {str(tmp_path / 'd.net')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600, cwd=REPO,
                   env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert _sha256(tmp_path / "d.net") == _sha256(tmp_path / "a.net")

    net = read_network(tmp_path / "a.net")
    x = random_input(net, n=9, steps=10, seed=5)
    first = Emulator(net).run(x, record_all=True)
    again = Emulator(net).run(x, record_all=True, batch_size=1)
    assert sum(int(s.sum()) for s in first.spikes.values()) > 0
    for index in first.spikes:
        np.testing.assert_array_equal(first.spikes[index], again.spikes[index])


# =========================================================================== (4) checkpoints

CODE_DIRS = ("snn2loihi", "models", "bench", "tests")


def _python_files() -> list:
    files = []
    for top in CODE_DIRS:
        for folder, dirs, names in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]  # bench/.peers: not ours
            files += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    return files


def _unsafe_loads(path: str) -> list:
    """Calls that would unpickle untrusted data: ``torch.load`` without ``weights_only=True``,
    ``pickle.load(s)``, ``np.load(..., allow_pickle=True)``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)):
            continue
        owner, name = node.func.value.id, node.func.attr
        kw = {k.arg: k.value for k in node.keywords}
        safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
        pickled = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True
        if (owner == "torch" and name == "load" and not safe) or (owner == "pickle" and name in ("load", "loads")) \
                or (owner in ("np", "numpy") and name == "load" and pickled):
            found.append(f"{os.path.relpath(path, REPO)}:{node.lineno} {owner}.{name}")
    return found


def test_no_unsafe_unpickling_in_the_code_base():
    """Every torch.load passes weights_only=True; nothing calls pickle.load or np.load with
    allow_pickle=True (CIFAR's pickles go through a restricted unpickler)."""
    files = _python_files()
    assert len(files) > 30 and any(f.endswith("checkpoint.py") for f in files)
    unsafe = [hit for path in files for hit in _unsafe_loads(path)]
    assert not unsafe, f"unsafe deserialization: {unsafe}"


def test_unsafe_unpickling_detector_finds_calls(tmp_path):
    """The scanner above flags what it should (so its silence means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, pickle, numpy as np\n"
                   "a = torch.load('x')\nb = torch.load('x', weights_only=False)\n"
                   "c = pickle.loads(b'')\nd = np.load('x', allow_pickle=True)\n"
                   "e = torch.load('x', weights_only=True)\nf = np.load('x')\n")
    assert [hit.split()[-1] for hit in _unsafe_loads(str(bad))] == ["torch.load", "torch.load", "pickle.loads",
                                                                     "np.load"]


class _Payload:
    """Unpickling this object would create a file (it stands for arbitrary code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    """A checkpoint holding a pickled callable is refused with CheckpointError, and the
    callable never runs."""
    marker = tmp_path / "pwned"
    torch.save({"format": "snn2loihi-checkpoint", "version": 1, "model": _Payload(str(marker))},
               tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert not marker.exists()


SAVE_LOOP = """
import sys, torch
sys.path.insert(0, {tests!r})
from snn2loihi.training.checkpoint import save_checkpoint
big = {{k: torch.full((1 << 20,), float(k)) for k in range(8)}}  # 32 MB per save
i = 0
while True:
    save_checkpoint({path!r}, {{"tag": i % 2, "weights": {{k: v + i % 2 for k, v in big.items()}}}})
    i += 1
    print(i, flush=True)
"""


def _size(path) -> int:
    """Bytes in ``path``; 0 if it was renamed away since it was listed."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_checkpoint_save_killed_midway_leaves_a_whole_file(tmp_path):
    """A process saving 32 MB checkpoints in a loop is SIGKILLed three times while its
    temporary file exists (mid-write): each time the checkpoint on disk loads and is one
    complete save (tag and all weights agree); a failed save in this process keeps the
    old file too."""
    path = str(tmp_path / "ckpt.pt")
    for _ in range(3):
        stale = set(tmp_path.glob(".ckpt.pt.*.tmp"))  # left by the saves killed before
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP.format(tests=os.path.dirname(__file__),
                                                                         path=path)],
                                stdout=subprocess.PIPE, cwd=REPO)
        try:
            assert proc.stdout.readline().strip(), "the saver never completed a save"
            with alarm(FAILURE_DEADLINE_S):  # until a save of this process has begun writing
                while not any(_size(tmp) > 0 for tmp in set(tmp_path.glob(".ckpt.pt.*.tmp")) - stale):
                    time.sleep(0.0005)
        finally:
            proc.kill()
            proc.wait()
        state = load_checkpoint(path)
        tag = state["tag"]
        assert all(torch.equal(w, torch.full((1 << 20,), float(k + tag))) for k, w in state["weights"].items())

    def failing_save(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"PK\x03\x04 half a file")
        raise OSError("No space left on device")

    before = load_checkpoint(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "save", failing_save)
        with pytest.raises(OSError):
            save_checkpoint(path, {"tag": 99})
    assert load_checkpoint(path)["tag"] == before["tag"]


KILL_RECIPE = """
name: kill_resume
method: sdt
seed: 5
data: {dataset: digits, input: analog, train_subset: 1200, test_subset: 64}
model:
  builder: vgg
  args: {channels: [16, "P", 16], timesteps: 4}
  neuron: {threshold: 1.0, current_decay: 1.0, voltage_decay: 0.5, reset: hard}
train: {batch_size: 32, lr: 0.01, stages: [{timesteps: 4, epochs: 3}]}
"""


@contextlib.contextmanager
def torch_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _wait_for_epoch(path: str, epoch: int, proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    """Poll the checkpoint until it records ``epoch`` finished epochs; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training ended early (exit {proc.returncode})"
        if os.path.exists(path):
            state = load_checkpoint(path)
            if state["epoch"] >= epoch:
                return state
        time.sleep(0.01)
    raise TimeoutError(f"no checkpoint of epoch {epoch} after {timeout} s")


def test_training_killed_mid_epoch_resumes_to_the_same_result(tmp_path):
    """``snn2loihi train`` SIGKILLed in the middle of epoch 2 of 3, then ``train --resume``,
    ends with exactly the weights, optimizer state, per-epoch losses and accuracies of an
    uninterrupted run with the same seed (all runs single-threaded)."""
    recipe = tmp_path / "kill_resume.yaml"
    recipe.write_text(KILL_RECIPE)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    with torch_threads(1):
        assert main(["train", "--recipe", str(recipe), "--out", str(whole), "--quiet"]) == 0

    proc = subprocess.Popen([sys.executable, "-m", "snn2loihi.cli", "train", "--recipe", str(recipe),
                             "--out", str(killed), "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        state = _wait_for_epoch(str(killed / "checkpoint.pt"), 1, proc)
        time.sleep(0.4 * state["history"][0]["seconds"])  # well into epoch 2
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before the kill"
    on_disk = load_checkpoint(str(killed / "checkpoint.pt"))
    assert on_disk["epoch"] in (1, 2) and not on_disk["done"]  # killed inside epoch 2 (or, if slow, 3)

    with torch_threads(1):
        assert main(["train", "--recipe", str(recipe), "--out", str(killed), "--resume", "--quiet"]) == 0
    a, b = load_checkpoint(str(whole / "checkpoint.pt")), load_checkpoint(str(killed / "checkpoint.pt"))
    assert a["epoch"] == b["epoch"] == 3 and a["done"] and b["done"]
    assert a["model_state"].keys() == b["model_state"].keys()
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key
    assert str(a["optimizer_state"]) == str(b["optimizer_state"])
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert [a["summary"][k] for k in ("accuracy_float", "accuracy_fixed_point_torch")] == \
        [b["summary"][k] for k in ("accuracy_float", "accuracy_fixed_point_torch")]
