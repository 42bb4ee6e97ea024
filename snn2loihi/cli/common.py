"""Helpers shared by commands: loading input arrays, running a file, checking output paths."""
from __future__ import annotations

import argparse
import os
import zipfile

import numpy as np

from ..errors import InputError


def load_input(path: str, net) -> np.ndarray:
    """Load and validate X for ``net``: shape (N, *input_shape, T), integer values,
    binary when the input layer has no neuron, 16-bit when it drives an input neuron."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable .npy array ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"{path}: expected one .npy array, found an .npz archive")
    expected = tuple(net.input.shape)
    if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected or x.shape[0] < 1 or x.shape[-1] < 1:
        raise InputError(f"{path}: array shape {x.shape} does not fit the network input; "
                         f"expected (N, {', '.join(map(str, expected))}, T)")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path}: array dtype {x.dtype} is not numeric")
    if x.dtype.kind == "f" and (not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x))):
        raise InputError(f"{path}: values must be integers")
    if net.input.neuron is None and x.size and (x.min() < 0 or x.max() > 1):
        raise InputError(f"{path}: values must be binary spikes (0/1) for a network whose input layer "
                         f"has no neuron; found range [{x.min()}, {x.max()}]")
    if x.size and (x.min() < -(1 << 15) or x.max() >= 1 << 15):
        raise InputError(f"{path}: input currents must fit in 16 bits")
    return x.astype(np.int64)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``NET --input X.npy [--no-pad]``, shared by commands that run a file."""
    parser.add_argument("net", help="netx HDF5 file")
    parser.add_argument("--input", required=True, help="input array X (.npy): (N, C, H, W, T) or (N, F, T)")
    parser.add_argument("--no-pad", action="store_true", help="do not append latency padding to the input")


def run_file(args: argparse.Namespace, backend: str, record_all: bool):
    """Read ``args.net``, load ``args.input``, pad it (``net.padding``: the latency, or up to the
    last firing window's end) and simulate it.

    Returns:
        (network, padded input, SimResult)
    """
    from ..data.encoding import pad_time
    from ..netx import read_network

    net = read_network(args.net)
    x = load_input(args.input, net)
    if getattr(args, "samples", None):  # commands with --samples N run the first N only
        x = x[:args.samples]
    if not args.no_pad:
        x = pad_time(x, net.padding(x.shape[-1]))
    if backend == "lava":
        from ..sim.lava_runner import run_lava

        return net, x, run_lava(net, x, record_all=record_all)
    from ..sim.emulator import Emulator

    return net, x, Emulator(net).run(x, record_all=record_all)


def check_writable(path: str) -> None:
    """Raise InputError unless ``path`` can be created (its folder exists, it is no folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory")
