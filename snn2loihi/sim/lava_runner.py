"""Run a :class:`Network` as fixed-point Lava processes on Lava's CPU backend.

Each layer becomes a netx block (``lava.lib.dl.netx.blocks.process``: Input, Dense,
Conv) holding Lava's own Dense/Conv synapse and a neuron process: Lava's ``LIF`` for
hard-reset neurons, our :class:`~snn2loihi.processes.LIFSoftReset` for soft reset (its
:class:`~snn2loihi.processes.LIFSoftResetWindowed` variant for a layer with a
``fire_window``, counting steps within each sample). A ``pool`` layer is a depthwise Conv
block. The graph is the one stock netx builds, so a
stock file gives the same spikes here as in ``netx.hdf5.Network``.

Many samples stream through one run: a RingBuffer source plays the samples back to
back, each in a window of T steps, and ``Reset`` processes zero every neuron's u and v
and every synapse's buffer after the last step of each window (v returns to the layer's
``v_init`` where it has one). Each sample therefore starts from rest, exactly as in the
emulator. The runtime is always stopped, and a failure inside the run (a process model
that raises or stalls) ends it within a poll interval instead of hanging it
(:mod:`snn2loihi.sim.watchdog`).

A layer's :class:`~snn2loihi.ir.Skip` becomes one more Lava Dense or Conv process that
reads the source block's spikes and drives the block's neurons: both synapses connect to
the neuron's ``a_in`` port, which sums them (as netx's recurrent dense block does).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

import numpy as np

from ..errors import InputError
from ..ir import (ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec,
                  layer_neuron)
from ..lava_imports import netx as _netx
from ..processes.recorder import SpikeRecorder
from .emulator import SimResult
from .synapses import delivered_weights, dense_weights
from .watchdog import run_watched


def neuron_params(neuron: NeuronSpec) -> dict:
    """netx-style neuron parameters (``neuron_proc`` plus LIF arguments) for a block."""
    from lava.proc.lif.process import LIF

    from ..processes import LIFSoftReset

    return {"neuron_proc": LIFSoftReset if neuron.soft_reset else LIF,
            "bias_key": "bias_mant",
            "vth": neuron.vth_mant,
            "du": neuron.i_decay - 1,  # Lava's bit-accurate model adds 1 back (ds_offset)
            "dv": neuron.v_decay,
            "bias_exp": 6,
            "num_message_bits": 0}


def lava_conv_weight(weight: np.ndarray) -> np.ndarray:
    """Torch (C_out, C_in, kH, kW) → Lava's (C_out, kW, kH, C_in), as netx converts it."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def whc(shape: tuple) -> tuple:
    """(C, H, W) → Lava's (W, H, C); 1-D shapes are unchanged."""
    return tuple(shape[::-1])


def build_blocks(net: Network) -> list:
    """One netx block per layer that owns neurons, in order, connected as netx connects them.

    Returns:
        list of (layer index, block) pairs; the input layer without a neuron has no block.
    """
    blocks_mod = _netx().blocks.process
    blocks: list = []
    flatten_next = False
    for i, layer in enumerate(net.layers):
        if isinstance(layer, FlattenLayer):
            flatten_next = True
            continue
        if isinstance(layer, InputLayer):
            if layer.neuron is not None:
                blocks.append((i, blocks_mod.Input(shape=whc(layer.shape), neuron_params=neuron_params(layer.neuron),
                                                   transform={"weight": layer.transform_weight,
                                                              "bias": layer.transform_bias})))
            continue
        params = {"neuron_params": neuron_params(layer_neuron(layer)), "input_message_bits": 0}
        if getattr(layer, "bias", None) is not None:
            params["bias"] = layer.bias
        if getattr(layer, "v_init", None) is not None:
            params["neuron_params"]["v"] = initial_voltage(layer)
        if getattr(layer, "fire_window", None) is not None:
            from ..processes import LIFSoftResetWindowed

            params["neuron_params"].update(neuron_proc=LIFSoftResetWindowed, fire_window=layer.fire_window)
        if isinstance(layer, DenseLayer):
            dw = dense_weights(layer.weight)
            block = blocks_mod.Dense(shape=layer.out_shape, weight=dw.lava_weight,
                                     num_weight_bits=dw.num_weight_bits, weight_exponent=dw.weight_exp,
                                     **params)
        else:
            if isinstance(layer, ConvLayer):
                weight, groups = layer.weight, layer.groups
            else:  # PoolLayer: depthwise conv with the pool kernel on every channel
                c = layer.in_shape[0]
                weight, groups = np.broadcast_to(layer.weight, (c, 1) + layer.weight.shape), c
            block = blocks_mod.Conv(input_shape=whc(layer.in_shape), shape=whc(layer.out_shape),
                                    weight=lava_conv_weight(np.asarray(weight)),
                                    stride=np.array(layer.stride[::-1]), padding=np.array(layer.padding[::-1]),
                                    dilation=np.array(layer.dilation[::-1]), groups=groups, **params)
        if blocks:
            out = blocks[-1][1].out
            (out.transpose([2, 1, 0]).flatten() if flatten_next and len(out.shape) == 3 else out).connect(block.inp)
        flatten_next = False
        blocks.append((i, block))
    return blocks


def initial_voltage(layer) -> np.ndarray:
    """A layer's ``v_init`` broadcast to Lava's neuron shape ((W, H, C) or (F,))."""
    return np.ascontiguousarray(np.broadcast_to(layer.v_init, whc(layer.out_shape))).astype(np.int64)


def connect_skips(net: Network, blocks: list) -> list:
    """Build one Lava synapse process per skip and connect it: source block's spikes →
    synapse → the target block's neuron ``a_in`` (summed with the block's own synapse).

    Returns:
        the skip synapse processes (their buffers must be reset between samples too).
    """
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense

    by_index = dict(blocks)
    processes = []
    for i, layer in enumerate(net.layers):
        if getattr(layer, "skip", None) is None:
            continue
        syn, source = net.skip_synapse(i), by_index[layer.skip.source]
        if isinstance(syn, DenseLayer):
            dw = dense_weights(syn.weight)
            proc = Dense(weights=dw.lava_weight, weight_exp=dw.weight_exp + syn.weight_exp,
                         num_weight_bits=dw.num_weight_bits, num_message_bits=0)
            out = source.out
            (out.transpose([2, 1, 0]).flatten() if len(out.shape) == 3 else out).connect(proc.s_in)
        else:
            proc = Conv(weight=lava_conv_weight(delivered_weights(syn)), input_shape=whc(syn.in_shape),
                        stride=np.array(syn.stride[::-1]), padding=np.array(syn.padding[::-1]),
                        dilation=np.array(syn.dilation[::-1]), groups=syn.groups, num_message_bits=0)
            source.out.connect(proc.s_in)
        proc.a_out.connect(by_index[i].neuron.a_in)
        processes.append(proc)
    return processes


def run_lava(net: Network, x: np.ndarray, record_all: bool = False,
             blocks: Optional[list] = None, run_cfg=None, timeout_s: Optional[float] = None) -> SimResult:
    """Simulate ``x`` (N, *input_shape, T) sample by sample in one Lava run.

    Args:
        net: the network.
        x: integer input (binary spikes, or input-neuron currents if the input layer has a
            neuron), the same array the emulator takes.
        record_all: record every layer's spikes (one sink per layer), not only the last.
        blocks: prebuilt blocks (``build_blocks`` or a stock ``netx.hdf5.Network``'s
            ``layers`` paired with their indices) to run instead of building from ``net``.
        run_cfg: Lava run configuration; default ``Loihi2SimCfg(select_tag="fixed_pt")``.
        timeout_s: wall-clock limit of the run (see :func:`~snn2loihi.sim.watchdog.run_watched`,
            which also ends the run at once when a Lava process fails); None: no limit.

    Returns:
        :class:`SimResult` with uint8 spikes (N, *shape, T) per recorded layer.

    Raises:
        LavaRunError: Lava failed; the runtime was stopped before raising.
    """
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    from ..processes.reset import ResetTo

    x = np.asarray(x)
    expected = tuple(net.input.shape)
    if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected:
        raise InputError(f"input has shape {x.shape}, expected (N, {', '.join(map(str, expected))}, T)")
    n, steps = x.shape[0], x.shape[-1]
    skips: list = []
    if blocks is None:
        blocks = build_blocks(net)
        skips = connect_skips(net, blocks)
    # (N, *shape, T) → (*WHC, N·T): samples back to back along time.
    stream = np.moveaxis(x, 0, -2).reshape(expected + (n * steps,))
    stream = stream.transpose(tuple(range(len(expected)))[::-1] + (len(expected),))
    source = io.source.RingBuffer(data=stream.astype(np.int32))
    first_index, first = blocks[0]
    if isinstance(net.layers[first_index], InputLayer):
        source.s_out.connect(first.neuron.a_in)
    elif len(expected) == 3 and len(first.inp.shape) == 1:
        source.s_out.transpose([2, 1, 0]).flatten().connect(first.inp)
    else:
        source.s_out.connect(first.inp)

    def buffer(synapse):
        return synapse.a_buff if hasattr(synapse, "a_buff") else synapse.a_buf

    for index, block in blocks:
        if hasattr(block.neuron, "period"):  # a firing window counts steps within each sample
            block.neuron.period.init = steps
        targets = [block.neuron.u]
        synapse = getattr(block, "synapse", None)
        if synapse is not None:
            targets.append(buffer(synapse))
        if getattr(net.layers[index], "v_init", None) is not None:
            ResetTo(value=initial_voltage(net.layers[index]), interval=steps,
                    offset=steps - 1).connect_var(block.neuron.v)
        else:
            targets.append(block.neuron.v)
        for var in targets:
            io.reset.Reset(interval=steps, offset=steps - 1).connect_var(var)
    for proc in skips:
        io.reset.Reset(interval=steps, offset=steps - 1).connect_var(buffer(proc))

    recorded = blocks if record_all else blocks[-1:]
    workdir = tempfile.mkdtemp(prefix="snn2loihi-lava-")
    sinks = []
    for index, block in recorded:
        path = os.path.join(workdir, f"layer{index}.npy")
        np.lib.format.open_memmap(path, mode="w+", dtype=np.int8, shape=tuple(block.out.shape) + (n * steps,))
        sink = SpikeRecorder(shape=tuple(block.out.shape), path=path)
        block.out.connect(sink.a_in)
        sinks.append((index, path))

    result = SimResult()
    try:
        run_watched(source, n * steps, run_cfg or Loihi2SimCfg(select_tag="fixed_pt"), timeout_s)
        for index, path in sinks:
            data = np.load(path)  # (*WHC, N·T)
            shape = net.layers[index].out_shape
            data = data.transpose(tuple(range(len(shape)))[::-1] + (len(shape),))  # (*CHW, N·T)
            data = data.reshape(shape + (n, steps))
            result.spikes[index] = np.moveaxis(data, -2, 0).astype(np.uint8)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result
