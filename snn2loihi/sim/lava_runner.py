"""Run a :class:`Network` as fixed-point Lava processes on Lava's CPU backend.

Each layer becomes a netx block (``lava.lib.dl.netx.blocks.process``: Input, Dense,
Conv) holding Lava's own Dense/Conv synapse and a neuron process: Lava's ``LIF`` for
hard-reset neurons, our :class:`~snn2loihi.processes.LIFSoftReset` for soft reset. A
``pool`` layer is a depthwise Conv block. The graph is the one stock netx builds, so a
stock file gives the same spikes here as in ``netx.hdf5.Network``.

Many samples stream through one run: a RingBuffer source plays the samples back to
back, each in a window of T steps, and ``Reset`` processes zero every neuron's u and v
and every synapse's buffer after the last step of each window. Each sample therefore
starts from rest, exactly as in the emulator. The runtime is always stopped.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import InputError, LavaRunError
from ..ir import (ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer,
                  layer_neuron)
from ..lava_imports import netx as _netx
from .emulator import SimResult
from .synapses import dense_weights


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


def run_lava(net: Network, x: np.ndarray, record_all: bool = False,
             blocks: Optional[list] = None) -> SimResult:
    """Simulate ``x`` (N, *input_shape, T) sample by sample in one Lava run.

    Args:
        net: the network.
        x: integer input (binary spikes, or input-neuron currents if the input layer has a
            neuron), the same array the emulator takes.
        record_all: record every layer's spikes (one sink per layer), not only the last.
        blocks: prebuilt blocks (``build_blocks`` or a stock ``netx.hdf5.Network``'s
            ``layers`` paired with their indices) to run instead of building from ``net``.

    Returns:
        :class:`SimResult` with uint8 spikes (N, *shape, T) per recorded layer.

    Raises:
        LavaRunError: Lava failed; the runtime was stopped before raising.
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    x = np.asarray(x)
    expected = tuple(net.input.shape)
    if x.ndim != len(expected) + 2 or tuple(x.shape[1:-1]) != expected:
        raise InputError(f"input has shape {x.shape}, expected (N, {', '.join(map(str, expected))}, T)")
    n, steps = x.shape[0], x.shape[-1]
    blocks = build_blocks(net) if blocks is None else blocks
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

    for _, block in blocks:
        targets = [block.neuron.u, block.neuron.v]
        synapse = getattr(block, "synapse", None)
        if synapse is not None:
            targets.append(synapse.a_buff if hasattr(synapse, "a_buff") else synapse.a_buf)
        for var in targets:
            io.reset.Reset(interval=steps, offset=steps - 1).connect_var(var)

    recorded = blocks if record_all else blocks[-1:]
    sinks = []
    for index, block in recorded:
        sink = io.sink.RingBuffer(shape=block.out.shape, buffer=n * steps)
        block.out.connect(sink.a_in)
        sinks.append((index, sink))

    result = SimResult()
    try:
        source.run(condition=RunSteps(num_steps=n * steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        for index, sink in sinks:
            data = np.asarray(sink.data.get())  # (*WHC, N·T)
            shape = net.layers[index].out_shape
            data = data.transpose(tuple(range(len(shape)))[::-1] + (len(shape),))  # (*CHW, N·T)
            data = data.reshape(shape + (n, steps))
            result.spikes[index] = np.moveaxis(data, -2, 0).astype(np.uint8)
    except Exception as err:  # Lava raises bare Exceptions from its runtime
        raise LavaRunError(f"Lava run failed: {type(err).__name__}: {str(err).strip()[:300]}") from err
    finally:
        try:
            source.stop()
        except Exception:  # the runtime may never have started; nothing to stop then
            pass
    return result
