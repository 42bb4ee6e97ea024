"""Shared fixtures and helpers of the test suite.

- ``random_network(kind, soft, seed, input_neuron)`` builds small random IR networks whose
  parameters are in the chip's ranges and tuned so that every layer spikes;
- ``random_input(net, n, steps, seed)`` builds a matching input array (N, *shape, T);
- ``assert_same_spikes(a, b)`` compares two :class:`SimResult` layer by layer;
- ``stock_netx_dir`` (fixture) is the folder of lava-dl's installed netx test files
  (tiny.net, mnist.net, gts/...), or skips the test when they are not installed.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

import numpy as np
import pytest

from snn2loihi.ir import (ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec,
                          PoolLayer)


# --------------------------------------------------------------------------- stock files

def find_stock_netx_dir() -> Optional[str]:
    """Folder holding lava-dl's netx test files (tiny.net ...), or None if not installed."""
    candidates = []
    # lava-dl installs its tests beside the lava package (site-packages/tests/...). Look
    # there first: importing the name "tests" could pick up this repository's tests/.
    lava_spec = importlib.util.find_spec("lava")
    if lava_spec is not None and lava_spec.submodule_search_locations:
        for loc in lava_spec.submodule_search_locations:
            candidates.append(os.path.join(os.path.dirname(loc), "tests", "lava", "lib", "dl", "netx"))
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "tiny.net")):
            return folder
    try:
        spec = importlib.util.find_spec("tests.lava.lib.dl.netx")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if os.path.isfile(os.path.join(folder, "tiny.net")):
            return folder
    return None


@pytest.fixture(scope="session")
def stock_netx_dir() -> str:
    """lava-dl's installed netx test folder; skips when lava-dl's tests are not installed."""
    folder = find_stock_netx_dir()
    if folder is None:
        pytest.skip("lava-dl's netx test files (tests/lava/lib/dl/netx/tiny.net) are not installed")
    return folder


def stock_file(folder: str, *parts: str) -> str:
    """Path of one stock file; skips the test if that file is missing."""
    path = os.path.join(folder, *parts)
    if not os.path.isfile(path):
        pytest.skip(f"stock netx file {path} is not installed")
    return path


# --------------------------------------------------------------------------- random nets

def random_weight(rng: np.random.Generator, shape, mean: float = 8.0, std: float = 100.0,
                  odd: bool = False) -> np.ndarray:
    """Integer weights in the chip's mantissa range.

    Even integers in [-256, 254] (the grid slayer writes) with a positive mean so that
    activity survives several layers; with ``odd=True`` a third of them are made odd
    (still within [-255, 253]) to exercise netx's weight-bit optimisation.
    """
    w = np.clip(np.round(rng.normal(mean, std, size=shape) / 2) * 2, -256, 254).astype(np.int64)
    if odd:
        flip = rng.random(size=shape) < 1 / 3
        w = np.where(flip, w + np.where(w >= 254, -1, 1), w)
    return w


def _neuron(rng: np.random.Generator, soft: bool, vth: int, i_decays=(4096, 1024, 2048),
            v_decays=(0, 128, 1024)) -> NeuronSpec:
    return NeuronSpec(kind="CUBA_SOFT" if soft else str(rng.choice(["CUBA", "LOIHI"])),
                      i_decay=int(rng.choice(i_decays)), v_decay=int(rng.choice(v_decays)),
                      vth_mant=int(vth))


def random_network(kind: str, soft: bool, seed: int, input_neuron: bool = False) -> Network:
    """A small random network that spikes at every layer.

    Args:
        kind: ``"dense"`` — input (20,) → dense 20→16 (bias) → dense 16→12 → dense 12→6;
            ``"conv"`` — input (2, 8, 8) → conv 2→4 3x3 pad 1 (bias) → pool 2x2 →
            conv 4→6 3x3 groups 2 → flatten → dense 24→10 (bias) → dense 10→5;
            ``"conv_nopool"`` — only layer types stock netx loads: input (2, 8, 8) →
            conv 2→4 3x3 pad 1 (bias) → conv 4→6 3x3 stride 2 groups 2 → flatten →
            dense 54→10 (bias) → dense 10→5.
        soft: use soft-reset (CUBA_SOFT) neurons on alternate layers (mixed resets);
            otherwise every layer is hard reset (CUBA / LOIHI).
        seed: random seed (the network is a pure function of the arguments).
        input_neuron: give the input layer a neuron; the input is then integer currents.
    """
    rng = np.random.default_rng(seed)
    counter = iter(range(100))

    def neuron(vth: int, **kw) -> NeuronSpec:
        k = next(counter)
        return _neuron(rng, soft and k % 2 == 0, vth, **kw)

    if kind == "dense":
        shape = (20,)
        layers: list = [InputLayer(shape, neuron(60) if input_neuron else None)]
        layers.append(DenseLayer(random_weight(rng, (16, 20)), neuron(250),
                                 bias=rng.integers(-20, 60, size=16)))
        layers.append(DenseLayer(random_weight(rng, (12, 16), odd=True), neuron(250)))
        layers.append(DenseLayer(random_weight(rng, (6, 12), mean=20), neuron(200)))
    elif kind == "conv":
        shape = (2, 8, 8)
        layers = [InputLayer(shape, neuron(60) if input_neuron else None)]
        conv1 = ConvLayer(shape, random_weight(rng, (4, 2, 3, 3)), neuron(300), padding=1,
                          bias=rng.integers(-10, 40, size=4))
        pool = PoolLayer(conv1.out_shape, rng.integers(20, 90, size=(2, 2)), neuron(150))
        conv2 = ConvLayer(pool.out_shape, random_weight(rng, (6, 2, 3, 3), odd=True), neuron(250),
                          groups=2)
        flat = FlattenLayer(conv2.out_shape)
        dense1 = DenseLayer(random_weight(rng, (10, 24), mean=20), neuron(300),
                            bias=rng.integers(-10, 30, size=10))
        dense2 = DenseLayer(random_weight(rng, (5, 10), mean=30, odd=True), neuron(200))
        layers += [conv1, pool, conv2, flat, dense1, dense2]
    elif kind == "conv_nopool":
        # Only layer types stock netx loads: input, conv, flatten, dense.
        shape = (2, 8, 8)
        layers = [InputLayer(shape, neuron(60) if input_neuron else None)]
        conv1 = ConvLayer(shape, random_weight(rng, (4, 2, 3, 3)), neuron(300), padding=1,
                          bias=rng.integers(-10, 40, size=4))
        conv2 = ConvLayer(conv1.out_shape, random_weight(rng, (6, 2, 3, 3), odd=True), neuron(250),
                          stride=2, groups=2)
        flat = FlattenLayer(conv2.out_shape)
        dense1 = DenseLayer(random_weight(rng, (10, 54), mean=20), neuron(300),
                            bias=rng.integers(-10, 30, size=10))
        dense2 = DenseLayer(random_weight(rng, (5, 10), mean=30, odd=True), neuron(200))
        layers += [conv1, conv2, flat, dense1, dense2]
    else:
        raise ValueError(f"unknown random network kind {kind!r}")
    return Network(layers, source=f"random-{kind}-{'soft' if soft else 'hard'}-{seed}")


def random_input(net: Network, n: int, steps: int, seed: int, rate: float = 0.35,
                 pad: Optional[int] = None) -> np.ndarray:
    """Input (N, *shape, T) for ``net``: binary spikes, or currents for an input neuron.

    The last ``pad`` steps (default ``net.latency``) are zero so the response of the
    deepest layer to the last input step is inside the window.
    """
    rng = np.random.default_rng(seed)
    pad = net.latency if pad is None else pad
    shape = (n,) + tuple(net.input.shape) + (steps,)
    if net.input.neuron is None:
        x = (rng.random(shape) < rate).astype(np.int64)
    else:
        x = rng.integers(-40, 70, size=shape).astype(np.int64)
    if pad:
        x[..., steps - pad:] = 0
    return x


# --------------------------------------------------------------------------- comparisons

def assert_same_spikes(expected, actual, require_activity: bool = True,
                       allow_silent: tuple = ()) -> None:
    """Assert two SimResults hold the same layers and identical spikes at every layer.

    With ``require_activity`` every layer (except indices in ``allow_silent``) must have
    spiked at least once in ``expected``, so the comparison cannot pass vacuously.
    """
    assert sorted(expected.spikes) == sorted(actual.spikes), "recorded layers differ"
    for index in sorted(expected.spikes):
        a, b = np.asarray(expected.spikes[index]), np.asarray(actual.spikes[index])
        assert a.shape == b.shape, f"layer {index}: shape {a.shape} != {b.shape}"
        if require_activity and index not in allow_silent:
            assert a.sum() > 0, f"layer {index} never spiked: the comparison would be vacuous"
        mismatch = int((a != b).sum())
        if mismatch:
            where = np.argwhere(a != b)[0]
            raise AssertionError(f"layer {index}: {mismatch} of {a.size} spike values differ "
                                 f"(first at index {tuple(int(i) for i in where)}; "
                                 f"counts {int(a.sum())} vs {int(b.sum())})")


# --------------------------------------------------------------------------- processes

def child_processes(pid: int) -> list:
    """Live child processes of ``pid`` as "PID cmdline" strings, from /proc.

    multiprocessing's resource tracker (one per Python process that used shared memory,
    alive until that process exits) is not counted: it is no leftover of a Lava run.
    """
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended while we looked
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == pid and state != "Z" and "multiprocessing.resource_tracker" not in cmdline:
            children.append(f"{entry} {cmdline[:120]}")
    return children
