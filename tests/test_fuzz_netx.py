"""Fuzz the commands that read netx files: hundreds of mutated files through ``snn2loihi.cli.main``.

Corpus. The seeds are files that ``write_network`` writes for the random test networks of
``conftest.random_network`` (dense; conv + pool + flatten + dense; conv without pool; spike
input and input-neuron currents; hard and soft reset) and every stock netx file that lava-dl
installs (tiny, mnist, ntidigits, PilotNet LIF and SDNN). A case is a seed plus one to three
mutations, chosen from what the file actually holds (so new layer types and datasets are
fuzzed as soon as a seed contains them):

- bytes: truncation, random byte flips, trailing garbage;
- datasets: deleted, other dtypes (strings, bool, complex, float16, uint8, compound, 0.5
  fractions, empty, scalar, other shapes), special values (0, ±1, 255, 256, -257, 4097,
  2^17 + 1, 2^23, 2^31, 2^40, 1e30, NaN, ±inf) in one element or all, dangling links,
  a chunked dataset of 2^26 + 1 or 2^40 values (a few bytes on disk: a memory bomb);
- layers: swapped, dropped (with and without renumbering), duplicated, renamed, replaced
  by a dataset, unknown / unsupported / non-ASCII ``type`` and ``neuron/type``, extra
  datasets (``delay``, ``messageBits``, unknown names), attributes.

Every case is fed to ``info``, ``info --json``, ``simulate --backend emulator``,
``simulate --backend lava`` and ``energy --json``. Each invocation must end in

- a clean error: exit status 2, exactly one stderr line ``snn2loihi: error: ...`` that
  names the netx or input file, no traceback; or
- a correct run: exit status 0, nothing on stderr, and output that checks out: Y has shape
  (N, F_out, T + latency) with binary values, every layer's spike count in ``energy``
  equals the emulator's recorded spikes, and a Lava run equals the emulator spike for spike.

Files that fail validation never start Lava (the reader refuses them first); of the files
that pass, at most ``LAVA_RUNS`` small ones run on Lava (a Lava run costs seconds).

Isolation. The commands run in a worker process (started once: importing Lava and torch
takes seconds) that redirects its file descriptors 1 and 2 per invocation, so stderr output
of Lava's own child processes is seen too. The parent enforces a timeout per invocation
(a hang fails the test instead of stalling CI), notices a crashed worker (a segfault in
HDF5, a Lava child taking the worker down), limits the worker's address space
(``RLIMIT_AS``: a memory blow-up becomes a ``MemoryError`` traceback, i.e. a failure), and
checks after every Lava run that no Lava process outlives it. The counts are printed and
recorded in ``docs/reliability.md``.
"""
from __future__ import annotations

import glob
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import child_processes, find_stock_netx_dir, random_network
from snn2loihi.netx import write_network
from test_residual import residual_network

#: Samples and steps of the input fed to every valid file (the CLI pads T by the latency).
N_SAMPLES, STEPS = 2, 4
#: Lava runs in the whole module (each costs ~3-5 s of start-up).
LAVA_RUNS = 7
#: Per-invocation limits: a hang or a runaway allocation is a failure, not a stall.
TIMEOUT_S, LAVA_TIMEOUT_S = 120.0, 300.0
MEMORY_HEADROOM = 3 << 30  # bytes of address space the worker may add after its imports
#: Files whose network is larger than this many neurons are not sent to Lava, or to
#: ``energy`` (whose core-mapping step takes ~35 s of CPU for PilotNet's 100k neurons).
LAVA_MAX_NEURONS = 4096
ENERGY_MAX_NEURONS = 20000

HYPOTHESIS_EXAMPLES = 120


# =========================================================================== the worker

def worker_main() -> None:
    """Serve CLI invocations: one JSON request per stdin line, one JSON reply per stdout line.

    Request: ``{"argv": [...], "stdout": PATH, "stderr": PATH}``; the command's fd 1 and 2
    go to those files. Reply: ``{"code": exit status, "peak_rss_kb": VmHWM}``. An uncaught
    exception prints its traceback to the case's stderr, as the console script would.
    """
    import resource
    import traceback
    import warnings

    channel = os.fdopen(os.dup(1), "w", buffering=1)
    import torch

    import snn2loihi.accounting  # noqa: F401 - imported once here, not inside the first case's timeout
    import snn2loihi.sim.lava_runner  # noqa: F401
    from snn2loihi.cli import main
    from snn2loihi.lava_imports import netx

    netx()
    torch.set_num_threads(1)
    # The warnings a user would see on the console, every time (not once per process).
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)
    limit = _status_kb(os.getpid(), "VmSize") * 1024 + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    channel.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                code = main(request["argv"])
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - what the user would see as a traceback
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        channel.write(json.dumps({"code": code, "peak_rss_kb": _status_kb(os.getpid(), "VmHWM")}) + "\n")


def _status_kb(pid: int, key: str) -> int:
    """A ``kB`` field (VmSize, VmHWM, ...) of ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


@dataclass
class Outcome:
    """What one CLI invocation did."""

    code: int
    stdout: str
    stderr: str


class CaseFailure(AssertionError):
    """An invocation hung, crashed the worker, or left Lava processes behind."""


class CliWorker:
    """The parent's handle on the worker process (see :func:`worker_main`)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.proc: Optional[subprocess.Popen] = None
        self.peak_rss_kb = 0

    def start(self) -> None:
        log = open(os.path.join(self.folder, "worker.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     cwd=os.path.dirname(os.path.abspath(__file__)),
                                     start_new_session=True)
        log.close()
        reply = self._reply(timeout=600.0, what="worker start-up")
        assert reply.get("ready"), reply

    def run(self, argv: list, timeout: float = TIMEOUT_S) -> Outcome:
        """Run ``snn2loihi.cli.main(argv)`` in the worker; raise CaseFailure on a hang or crash."""
        if self.proc is None:
            self.start()
        out = os.path.join(self.folder, "stdout.txt")
        err = os.path.join(self.folder, "stderr.txt")
        self.proc.stdin.write((json.dumps({"argv": [str(a) for a in argv], "stdout": out, "stderr": err})
                               + "\n").encode())
        self.proc.stdin.flush()
        reply = self._reply(timeout, "snn2loihi " + " ".join(map(str, argv)))
        self.peak_rss_kb = max(self.peak_rss_kb, reply["peak_rss_kb"])
        read = lambda path: open(path, "rb").read().decode("utf-8", "replace")  # noqa: E731
        return Outcome(reply["code"], read(out), read(err))

    def children(self) -> list:
        """Live child processes of the worker (Lava's), multiprocessing's resource tracker aside."""
        return child_processes(self.proc.pid) if self.proc is not None else []

    def _reply(self, timeout: float, what: str) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise CaseFailure(f"{what}: no answer within {timeout:.0f} s (hang); worker killed")
        line = self.proc.stdout.readline()
        if not line:
            status = self.proc.wait()
            self.proc = None
            raise CaseFailure(f"{what}: the worker died (exit status {status}: a crash, not a clean error)")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and the Lava processes it started
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None


# =========================================================================== seeds

SEED_NETWORKS = [  # (name, random_network kind, soft reset, input neuron, seed)
    ("dense-hard", "dense", False, False, 11),
    ("dense-soft-inneuron", "dense", True, True, 12),
    ("conv-pool-soft", "conv", True, False, 13),
    ("conv-pool-hard-inneuron", "conv", False, True, 14),
    ("conv-nopool-hard", "conv_nopool", False, False, 15),
]


def make_seeds(folder: str) -> dict:
    """name → path of every seed file: written networks (the random ones and a residual
    network with skips and initial voltages) and the installed stock files."""
    seeds = {}
    nets = [(name, random_network(kind, soft, seed, input_neuron))
            for name, kind, soft, input_neuron, seed in SEED_NETWORKS]
    for name, net in nets + [("residual", residual_network(3))]:
        path = os.path.join(folder, f"{name}.net")
        write_network(net, path)
        seeds[name] = path
    stock = find_stock_netx_dir()
    if stock is not None:
        for path in sorted(glob.glob(os.path.join(stock, "**", "*.net"), recursive=True)):
            seeds["stock-" + os.path.relpath(path, stock).replace(os.sep, "-")[:-4]] = path
    return seeds


# =========================================================================== mutations

SPECIAL_VALUES = [0, -1, 1, 2, 255, 256, -256, -257, 4095, 4096, 4097, -4097, (1 << 17), (1 << 17) + 1,
                  1 << 20, 1 << 23, (1 << 31) - 1, -(1 << 31), 1 << 40, 0.5, -2.5, 1e30, float("nan"),
                  float("inf"), -float("inf")]
DTYPES = ["bytes", "vlen_str", "bool", "complex", "float16", "uint8", "int8", "fraction", "empty",
          "compound", "scalar", "add_axis", "flatten", "transpose", "drop_one", "repeat"]
LAYER_TYPES = [b"input", b"dense", b"conv", b"pool", b"flatten", b"average", b"concat", b"dense_rec",
               b"convT", b"unpool", b"wormhole", b"", b"\xff\xfe", b"CONV", b"dense\x00x", "ünïcode", b"x" * 200]
NEURON_TYPES = [b"CUBA", b"LOIHI", b"CUBA_SOFT", b"SDNN", b"RF_PHASE", b"RF_IZHIKEVICH", b"", b"cuba", b"\xff"]
EXTRA_DATASETS = ["delay", "foo", "neuron/messageBits", "neuron/gradedSpike", "bias", "vInit", "skip"]
LAYER_NAMES = ["-1", "x", "01", "1.0", " 0", "99"]
BYTE_MUTATIONS = ("truncate", "flip", "append")
MUTATIONS = BYTE_MUTATIONS + ("delete", "dtype", "value", "link", "bomb", "swap", "drop", "duplicate",
                              "rename", "layer_to_dataset", "type", "extra", "attrs")
#: What hypothesis draws from: dataset edits twice as often as the rest.
WEIGHTED_MUTATIONS = MUTATIONS + ("delete", "dtype", "value")


def value_code(value, all_elements: bool) -> int:
    """The ``b`` of a "value" mutation that sets ``value`` in every element or in one."""
    return SPECIAL_VALUES.index(value) + len(SPECIAL_VALUES) * int(all_elements)


def _layer_names(h: "h5py.File") -> list:
    if "layer" not in h or not isinstance(h["layer"], h5py.Group):
        return []
    return sorted(h["layer"].keys(), key=lambda k: (len(k), k))


def _datasets(h: "h5py.File") -> list:
    """Paths of every dataset below /layer, in a fixed order."""
    found: list = []
    if "layer" in h and isinstance(h["layer"], h5py.Group):
        h["layer"].visititems(lambda name, obj: found.append("layer/" + name)
                              if isinstance(obj, h5py.Dataset) else None)
    return sorted(found)


def _replace(h: "h5py.File", path: str, data, **kw) -> None:
    if path in h:
        del h[path]
    h.create_dataset(path, data=data, **kw)


def _with_dtype(arr: np.ndarray, kind: str):
    """``arr`` converted to an ill-fitting dtype or shape (see DTYPES)."""
    num = arr if arr.dtype.kind in "biuf" else np.zeros(arr.shape)
    if kind == "bytes":
        return np.full(arr.shape, b"7", dtype="S1") if arr.shape else np.bytes_(b"7")
    if kind == "vlen_str":
        return np.array(["12"] * max(arr.size, 1), dtype=h5py.string_dtype())
    if kind == "bool":
        return num != 0
    if kind == "complex":
        return num.astype(np.complex64) + 1j
    if kind == "float16":
        with np.errstate(over="ignore"):
            return num.astype(np.float16)
    if kind == "uint8":
        return num.astype(np.int64).astype(np.uint8)
    if kind == "int8":
        return num.astype(np.int64).astype(np.int8)
    if kind == "fraction":
        return num.astype(np.float64) + 0.5
    if kind == "empty":
        return np.zeros((0,), np.float32)
    if kind == "compound":
        return np.zeros(num.shape, dtype=[("a", "i4"), ("b", "f4")])
    if kind == "scalar":
        return num.ravel()[0] if num.size else 0
    if kind == "add_axis":
        return num[None]
    if kind == "flatten":
        return num.ravel()
    if kind == "transpose":
        return num.T
    if kind == "drop_one":
        return num.ravel()[:-1]
    if kind == "repeat":
        return np.concatenate([num.ravel(), num.ravel()])
    raise ValueError(kind)


def _with_value(arr: np.ndarray, value, index: Optional[int]):
    """``arr`` (numeric or not) with element ``index`` (or all elements) set to ``value``."""
    out = np.array(arr if arr.dtype.kind in "biuf" else np.zeros(arr.shape), dtype=np.float64)
    if out.size == 0:
        out = np.zeros(1)
    if index is None:
        out[...] = value
    else:
        out.flat[index % out.size] = value
    if isinstance(value, int) and abs(value) < 1 << 62 and np.all(out == np.round(out)):
        return out.astype(np.int64)
    return out


def _type_data(value) -> np.ndarray:
    if isinstance(value, str):
        return np.array([value], dtype=h5py.string_dtype("utf-8"))
    return np.array([value], dtype=f"S{max(len(value), 1)}")


def _move_layers(h: "h5py.File", order: list) -> None:
    """Rename the layer groups so that new layer ``i`` is old layer ``order[i]``."""
    group = h["layer"]
    for name in list(group.keys()):
        group.move(name, f"tmp_{name}")
    for i, name in enumerate(order):
        group.move(f"tmp_{name}", str(i))
    for name in list(group.keys()):  # layers left out of ``order`` are dropped
        if name.startswith("tmp_"):
            del group[name]


def apply_mutation(path: str, kind: str, a, b: int) -> str:
    """Mutate the file at ``path`` in place; ``a``, ``b`` pick the target and the variant
    (``a`` may also name the dataset, e.g. ``"layer/2/shape"``).

    Returns a short description of what was done (for failure messages)."""
    if kind in BYTE_MUTATIONS:
        data = bytearray(open(path, "rb").read())
        rng = np.random.default_rng(a)
        if kind == "truncate":
            cut = int(len(data) * (a % 1000) / 1000)
            data = data[:cut]
            what = f"truncate to {cut} of {len(data)} bytes"
        elif kind == "flip":
            count = 1 + b % 64
            where = rng.integers(0, max(len(data), 1), size=count)
            for i in where:
                data[int(i)] = int(rng.integers(0, 256))
            what = f"flip {count} bytes (seed {a})"
        else:
            data += rng.integers(0, 256, size=1 + b % 4096, dtype=np.uint8).tobytes()
            what = f"append {1 + b % 4096} garbage bytes"
        with open(path, "wb") as handle:
            handle.write(bytes(data))
        return what
    try:
        with h5py.File(path, "r+") as h:
            return _mutate_hdf5(h, kind, a, b)
    except Exception as err:  # noqa: BLE001 - an earlier byte mutation may have damaged the file
        return f"{kind}: h5py could not apply it ({type(err).__name__})"


def _mutate_hdf5(h: "h5py.File", kind: str, a: int, b: int) -> str:
    """The structural mutations of :func:`apply_mutation`, on an open file."""
    layers, datasets = _layer_names(h), _datasets(h)
    if kind in ("delete", "dtype", "value", "link", "bomb"):
        if not datasets:
            return f"{kind}: no datasets"
        target = a if isinstance(a, str) else datasets[a % len(datasets)]
        if kind == "delete":
            del h[target]
            return f"delete {target}"
        if kind == "link":
            del h[target]
            h[target] = h5py.SoftLink("/nowhere") if b % 2 else h5py.ExternalLink("missing.h5", "/x")
            return f"{target} → dangling {'soft' if b % 2 else 'external'} link"
        if kind == "bomb":
            size = (1 << 26) + 1 if b % 2 else 1 << 40
            del h[target]
            h.create_dataset(target, shape=(size,), dtype="f4", chunks=(1 << 16,), compression="gzip",
                             fillvalue=1.0)
            return f"{target} → {size} values, chunked (nothing stored)"
        arr = np.asarray(h[target][()])
        if kind == "dtype":
            variant = DTYPES[b % len(DTYPES)]
            _replace(h, target, _with_dtype(arr, variant))
            return f"{target} as {variant}"
        value = SPECIAL_VALUES[b % len(SPECIAL_VALUES)]
        index = None if (b // len(SPECIAL_VALUES)) % 2 else a
        _replace(h, target, _with_value(arr, value, index))
        return f"{target}[{'all' if index is None else index}] = {value}"
    if kind == "attrs":
        h.attrs["note"] = "fuzz"
        if layers:
            h[f"layer/{layers[a % len(layers)]}"].attrs["shape"] = np.arange(b % 7)
        return "attributes added"
    if not layers:
        return f"{kind}: no layers"
    i = a % len(layers)
    name = layers[i]
    if kind == "swap":
        j = b % len(layers)
        order = list(layers)
        order[i], order[j] = order[j], order[i]
        _move_layers(h, order)
        return f"swap layers {layers[i]} and {layers[j]}"
    if kind == "drop":
        if b % 2:
            del h[f"layer/{name}"]
            return f"drop layer {name}, leave a gap"
        _move_layers(h, [n for n in layers if n != name])
        return f"drop layer {name}, renumber"
    if kind == "duplicate":
        j = b % (len(layers) + 1)
        h.copy(h[f"layer/{name}"], h["layer"], name=f"copy_{name}")
        order = list(layers)
        order.insert(j, f"copy_{name}")
        _move_layers(h, order)
        return f"duplicate layer {name} at {j}"
    if kind == "rename":
        new = LAYER_NAMES[b % len(LAYER_NAMES)]
        if new in h["layer"]:
            return f"rename: {new} exists"
        h["layer"].move(name, new)
        return f"rename layer {name} → {new!r}"
    if kind == "layer_to_dataset":
        del h[f"layer/{name}"]
        h.create_dataset(f"layer/{name}", data=np.zeros(3))
        return f"layer {name} → dataset"
    group = h[f"layer/{name}"]
    if not isinstance(group, h5py.Group):
        return f"{kind}: layer {name} is no group"
    if kind == "type":
        if b % 3 == 0 and "neuron" in group and isinstance(group["neuron"], h5py.Group):
            value = NEURON_TYPES[b % len(NEURON_TYPES)]
            _replace(group, "neuron/type", value if isinstance(value, str) else np.bytes_(value))
            return f"layer {name} neuron/type = {value!r}"
        value = LAYER_TYPES[b % len(LAYER_TYPES)]
        _replace(group, "type", _type_data(value))
        return f"layer {name} type = {value!r}"
    if kind == "extra":
        key = EXTRA_DATASETS[b % len(EXTRA_DATASETS)]
        if key.startswith("neuron/") and not isinstance(group.get("neuron"), h5py.Group):
            return f"extra: layer {name} has no neuron group"
        _replace(group, key, np.arange(1 + b % 5, dtype=np.float32))
        return f"layer {name}: extra dataset {key}"
    raise ValueError(f"unknown mutation {kind}")


# =========================================================================== checking outcomes

@dataclass
class Tally:
    """Counts over the module, printed at the end and kept in docs/reliability.md."""

    cases: int = 0
    valid_cases: int = 0
    invocations: int = 0
    clean_errors: int = 0
    correct_runs: int = 0
    lava_runs: int = 0
    lava_with_spikes: int = 0
    skipped: list = field(default_factory=list)
    messages: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.cases} cases ({self.valid_cases} valid files), {self.invocations} CLI invocations: "
                f"{self.clean_errors} clean one-line errors, {self.correct_runs} correct runs "
                f"({self.lava_runs} on Lava, equal to the emulator; {self.lava_with_spikes} of them with "
                f"output spikes); {len(self.skipped)} commands skipped as too large")


def check_clean_error(outcome: Outcome, files: tuple, tally: Tally) -> None:
    """Exit status 2, one stderr line naming one of ``files``, no traceback."""
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == 2 and len(lines) == 1 and lines[0].startswith("snn2loihi: error: ") \
        and "Traceback" not in outcome.stderr and any(str(f) in lines[0] for f in files), \
        (f"not a clean one-line error: exit {outcome.code}\n--- stderr ---\n{outcome.stderr[-3000:]}"
         f"\n--- stdout ---\n{outcome.stdout[-1000:]}")
    tally.clean_errors += 1
    problem = lines[0].split(": ", 3)[-1][:100]
    tally.messages[problem] = tally.messages.get(problem, 0) + 1


def check_success(outcome: Outcome) -> None:
    assert outcome.code == 0 and not outcome.stderr.strip(), \
        f"exit {outcome.code}, stderr:\n{outcome.stderr[-3000:]}"


class CaseRunner:
    """Feeds one file to every command and checks each outcome."""

    def __init__(self, worker: CliWorker, folder: str, tally: Tally):
        self.worker, self.folder, self.tally = worker, folder, tally

    def invoke(self, argv: list, timeout: float = TIMEOUT_S) -> Outcome:
        self.tally.invocations += 1
        return self.worker.run(argv, timeout)

    def run_case(self, net: str, describe: str, lava_ok: bool) -> bool:
        """All commands on ``net``; returns True when the file was valid and ran correctly."""
        self.tally.cases += 1
        x_path = os.path.join(self.folder, "x.npy")
        y_path = os.path.join(self.folder, "y.npy")
        try:
            info = self.invoke(["info", net])
            if info.code != 0:
                if not os.path.exists(x_path):  # any array: the file is refused before X is read
                    np.save(x_path, np.zeros((1, 1, 1), np.uint8))
                for argv in (["info", net, "--json"],
                             ["simulate", net, "--input", x_path, "--backend", "emulator", "--out", y_path],
                             ["simulate", net, "--input", x_path, "--backend", "lava", "--out", y_path],
                             ["energy", net, "--input", x_path, "--json"]):
                    check_clean_error(self.invoke(argv), (net, x_path), self.tally)
                check_clean_error(info, (net,), self.tally)
                return False
            self.run_valid(net, info, x_path, y_path, lava_ok)
            return True
        except AssertionError as err:
            raise AssertionError(f"case {describe}: {err}") from None

    def run_valid(self, net: str, info: Outcome, x_path: str, y_path: str, lava_ok: bool) -> None:
        tally = self.tally
        tally.valid_cases += 1
        check_success(info)
        as_json = self.invoke(["info", net, "--json"])
        check_success(as_json)
        table = json.loads(as_json.stdout)
        latency, rows = table["latency"], table["layers"]
        assert info.stdout.splitlines()[0] == f"{net}: {len(rows)} layers, latency {latency} steps"
        tally.correct_runs += 2
        in_shape = tuple(int(s) for s in rows[0]["shape"].split("x"))
        neurons = sum(int(np.prod([int(s) for s in r["shape"].split("x")])) for r in rows)
        if np.prod(in_shape) * N_SAMPLES * STEPS > 1 << 22:
            tally.skipped.append(f"simulate, energy: input {in_shape}")
            return
        rng = np.random.default_rng(tally.cases)
        shape = (N_SAMPLES,) + in_shape + (STEPS,)
        x = (rng.integers(-40, 70, size=shape) if rows[0].get("neuron")
             else (rng.random(shape) < 0.4).astype(np.uint8))
        np.save(x_path, x)
        sim = self.invoke(["simulate", net, "--input", x_path, "--backend", "emulator", "--out", y_path,
                           "--record-all"])
        check_success(sim)
        y = np.load(y_path)
        f_out = int(np.prod([int(s) for s in rows[-1]["shape"].split("x")]))
        assert y.shape == (N_SAMPLES, f_out, STEPS + latency), f"Y shape {y.shape}"
        assert set(np.unique(y)) <= {0, 1}, "Y is not binary"
        tally.correct_runs += 1
        if neurons <= ENERGY_MAX_NEURONS:
            per_layer = {int(k.split("_")[1]): int(v.sum()) for k, v in np.load(y_path[:-4] + ".npz").items()}
            energy = self.invoke(["energy", net, "--input", x_path, "--json"])
            check_success(energy)
            report = json.loads(energy.stdout)
            assert {la["index"]: la["spikes"] for la in report["layers"]} == per_layer, \
                "energy's per-layer spike counts differ from the emulator's recorded spikes"
            assert report["layers"][-1]["spikes"] == int(y.sum())
            tally.correct_runs += 1
        else:
            tally.skipped.append(f"energy: {neurons} neurons")
        if lava_ok and tally.lava_runs < LAVA_RUNS and neurons <= LAVA_MAX_NEURONS:
            lava_y = y_path[:-4] + "_lava.npy"
            lava = self.invoke(["simulate", net, "--input", x_path, "--backend", "lava", "--out", lava_y],
                               timeout=LAVA_TIMEOUT_S)
            tally.lava_runs += 1
            check_success(lava)
            left = self.worker.children()
            assert not left, f"Lava processes outlived the run: {left}"
            np.testing.assert_array_equal(np.load(lava_y), y, err_msg="Lava differs from the emulator")
            tally.correct_runs += 1
            tally.lava_with_spikes += int(y.sum() > 0)


# =========================================================================== fixtures

@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    """(case runner, seeds, scratch folder); prints the tally when the module ends."""
    folder = str(tmp_path_factory.mktemp("fuzz"))
    worker = CliWorker(folder)
    tally = Tally()
    seeds = make_seeds(os.path.join(folder, "seeds"))
    runner = CaseRunner(worker, folder, tally)
    started = time.monotonic()
    yield runner, seeds, folder
    left = worker.children()
    worker.close()
    with open(os.path.join(folder, "messages.json"), "w") as handle:  # every distinct error, for review
        json.dump(tally.messages, handle, indent=1, sort_keys=True)
    elapsed = time.monotonic() - started
    print(f"\nnetx fuzz: {tally.summary()}; worker peak RSS {worker.peak_rss_kb / 1024:.0f} MiB; "
          f"{elapsed:.0f} s")
    print("netx fuzz: most frequent errors: " +
          "; ".join(f"{n}x {m}" for m, n in sorted(tally.messages.items(), key=lambda kv: -kv[1])[:8]))
    assert not left, f"processes left behind by the worker: {left}"


def mutated_copy(seeds: dict, folder: str, seed: str, mutations: list) -> tuple[str, str]:
    """Copy seed ``seed`` to the scratch folder and apply ``mutations``; (path, description)."""
    path = os.path.join(folder, "case.net")
    shutil.copyfile(seeds[seed], path)
    done = [apply_mutation(path, *m) for m in mutations]
    return path, f"{seed}: " + "; ".join(done)


def _small(seed: str) -> bool:
    return not seed.startswith("stock-") or seed == "stock-tiny"


# =========================================================================== tests

def test_unmutated_seeds(fuzz):
    """Every seed file as it is: the written networks and stock tiny/mnist/PilotNet-LIF run
    correctly (two of them on Lava too); the stock files with features we refuse (synaptic
    delays in ntidigits, SDNN neurons in PilotNet-SDNN) end in a clean error."""
    runner, seeds, folder = fuzz
    refused = {"stock-gts-ntidigits-ntidigits", "stock-gts-pilotnet_sdnn-network",
               "stock-gts-pilotnet_sdnn-square_network"}
    lava_seeds = {"conv-pool-soft", "residual", "stock-tiny"}
    for name, path in seeds.items():
        case, describe = mutated_copy(seeds, folder, name, [])
        valid = runner.run_case(case, describe, lava_ok=name in lava_seeds)
        assert valid == (name not in refused), f"{name}: valid={valid}"


#: Cases that ended in a traceback before the fixes this fuzzer led to (see docs/reliability.md).
REGRESSIONS = [
    # all-zero dense weights: netx's optimize_weight_bits divided by max |W| = 0 (OverflowError)
    ("conv-pool-soft", [("value", "layer/6/weight", value_code(0, True))]),
    ("dense-hard", [("value", "layer/1/weight", value_code(0, True))]),
    # a last conv layer without 'shape' and with padding 2^20: a (36, 2^21, 2^21) output passed
    # validation, and the emulator then tried to allocate it
    ("stock-tiny", [("delete", "layer/2/shape", 0), ("value", "layer/2/padding", value_code(1 << 20, True))]),
]


def test_regressions(fuzz):
    """The fuzzer's past findings, each checked like any other case (valid ones on Lava too)."""
    runner, seeds, folder = fuzz
    for seed, mutations in REGRESSIONS:
        if seed in seeds:
            case, describe = mutated_copy(seeds, folder, seed, mutations)
            runner.run_case(case, describe, lava_ok=True)


def _dataset_mutations(datasets: list) -> list:
    """Per dataset: deleted, zeroed, and in turn a special value in all elements, in one
    element, or a wrong dtype."""
    mutations = []
    for d, path in enumerate(datasets):
        value = SPECIAL_VALUES[d % len(SPECIAL_VALUES)]
        third = [("value", path, value_code(value, True)), ("value", path, value_code(value, False)),
                 ("dtype", path, d)][d % 3]
        mutations += [("delete", path, 0), ("value", path, value_code(0, True)), third]
    return mutations


def test_corpus_every_dataset(fuzz):
    """Systematic corpus on the conv + pool seed (every stock layer type and pool): every
    dataset deleted, zeroed, and set to a special value or given a wrong dtype; every layer
    swapped with the next, dropped and given an unknown type; truncations and byte flips.
    On the residual seed the same dataset mutations for its ``skip`` groups and ``vInit``."""
    runner, seeds, folder = fuzz
    with h5py.File(seeds["conv-pool-soft"], "r") as h:
        datasets, n_layers = _datasets(h), len(_layer_names(h))
    with h5py.File(seeds["residual"], "r") as h:
        residual = [d for d in _datasets(h) if "/skip/" in d or d.endswith("/vInit")]
    assert len(datasets) > 50 and len(residual) >= 9
    cases = [("conv-pool-soft", m) for m in _dataset_mutations(datasets)]
    cases += [("conv-pool-soft", m) for i in range(n_layers)
              for m in (("swap", i, i + 1), ("drop", i, 0), ("type", i, 10 + 3 * i + 1))]
    cases += [("conv-pool-soft", ("truncate", f, 0)) for f in (0, 1, 100, 500, 900, 999)]
    cases += [("conv-pool-soft", ("flip", s, 16)) for s in range(6)]
    cases += [("residual", m) for m in _dataset_mutations(residual)]
    for k, (seed, mutation) in enumerate(cases):
        case, describe = mutated_copy(seeds, folder, seed, [mutation])
        runner.run_case(case, describe, lava_ok=k % 60 == 7)


@st.composite
def cases(draw, seed_names: tuple):
    seed = draw(st.sampled_from(seed_names))
    mutation = st.tuples(st.sampled_from(WEIGHTED_MUTATIONS), st.integers(0, 1 << 20), st.integers(0, 1 << 20))
    return seed, draw(st.lists(mutation, min_size=1, max_size=2))


def test_hypothesis_mutations(fuzz):
    """Hypothesis draws a seed and 1-3 mutations (HYPOTHESIS_EXAMPLES cases, derandomized so
    every run sees the same cases); every command must end cleanly or run correctly."""
    runner, seeds, folder = fuzz
    names = tuple(sorted(seeds))

    @settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=cases(names))
    def check(case):
        seed, mutations = case
        path, describe = mutated_copy(seeds, folder, seed, mutations)
        runner.run_case(path, describe, lava_ok=_small(seed))

    check()


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker_main()
