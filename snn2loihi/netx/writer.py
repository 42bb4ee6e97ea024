"""Write a :class:`Network` as a netx HDF5 file, laid out exactly as slayer's exporter does.

A network of hard-reset CUBA neurons with input/dense/conv/flatten layers comes out as a
stock file that ``lava.lib.dl.netx.hdf5.Network`` loads unmodified. Soft-reset neurons
are written with ``neuron/type = "CUBA_SOFT"`` and pooling as slayer's ``pool`` layer;
stock netx refuses both instead of misreading them (see ``docs/netx_format.md``). Skip
connections (a ``skip`` group) and initial voltages (``vInit``) exist only on CUBA_SOFT
layers, so stock netx refuses those files too (``docs/residual.md``).

The file is written to a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from ..atomic import atomic_path
from ..ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer, Skip


def write_network(net: Network, path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        group = handle.create_group("layer")
        for i, layer in enumerate(net.layers):
            write_layer(group.create_group(str(i)), layer)


def write_layer(g: h5py.Group, layer) -> None:
    """Write one :mod:`snn2loihi.ir` layer into the (empty) h5py group ``g``."""
    if isinstance(layer, InputLayer):
        _type(g, "input")
        g.create_dataset("shape", data=np.array(layer.shape))
        if (layer.transform_weight, layer.transform_bias) != (64, 0):
            g.create_dataset("weight", data=layer.transform_weight)
            g.create_dataset("bias", data=layer.transform_bias)
        if layer.neuron is not None:
            _neuron(g, layer.neuron)
        return
    if isinstance(layer, FlattenLayer):
        _type(g, "flatten")
        g.create_dataset("shape", data=np.array(layer.out_shape))
        return
    if isinstance(layer, DenseLayer):
        _type(g, "dense")
        g.create_dataset("shape", data=np.array(layer.out_shape))
        g.create_dataset("inFeatures", data=layer.weight.shape[1])
        g.create_dataset("outFeatures", data=layer.weight.shape[0])
        g.create_dataset("weight", data=layer.weight.astype(np.float32))
    elif isinstance(layer, ConvLayer):
        _type(g, "conv")
        g.create_dataset("shape", data=np.array(layer.out_shape))
        g.create_dataset("inChannels", data=layer.in_shape[0])
        g.create_dataset("outChannels", data=layer.weight.shape[0])
        _geometry(g, layer)
        g.create_dataset("groups", data=layer.groups)
        g.create_dataset("weight", data=layer.weight[..., None].astype(np.float32))
    elif isinstance(layer, PoolLayer):
        _type(g, "pool")
        g.create_dataset("shape", data=np.array(layer.out_shape))
        _geometry(g, layer)
        g.create_dataset("weight", data=layer.weight[None, None].astype(np.float32))
    else:
        raise TypeError(f"cannot write {type(layer).__name__}")
    if getattr(layer, "bias", None) is not None:
        g.create_dataset("bias", data=layer.bias.astype(np.float32))
    if getattr(layer, "v_init", None) is not None:
        g.create_dataset("vInit", data=layer.v_init.astype(np.int32))
    if getattr(layer, "fire_window", None) is not None:
        g.create_dataset("fireWindow", data=np.array(layer.fire_window, dtype=np.int64))
    if getattr(layer, "skip", None) is not None:
        _skip(g.create_group("skip"), layer.skip)
    if layer.neuron is not None:
        _neuron(g, layer.neuron)


def _skip(g: h5py.Group, skip: Skip) -> None:
    g.create_dataset("source", data=skip.source)
    g.create_dataset("weight", data=skip.weight.astype(np.float32))
    if skip.weight_exp:
        g.create_dataset("weightExp", data=skip.weight_exp)
    if not skip.is_dense:
        _geometry(g, skip)
        g.create_dataset("groups", data=skip.groups)


def _geometry(g: h5py.Group, layer) -> None:
    g.create_dataset("kernelSize", data=np.array(layer.kernel))
    g.create_dataset("stride", data=np.array(layer.stride))
    g.create_dataset("padding", data=np.array(layer.padding))
    g.create_dataset("dilation", data=np.array(layer.dilation))


def _type(g: h5py.Group, name: str) -> None:
    g.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _neuron(g: h5py.Group, neuron: NeuronSpec) -> None:
    g.create_dataset("neuron/type", data=neuron.kind)
    g.create_dataset("neuron/iDecay", data=neuron.i_decay)
    g.create_dataset("neuron/vDecay", data=neuron.v_decay)
    g.create_dataset("neuron/vThMant", data=neuron.vth_mant)
    g.create_dataset("neuron/refDelay", data=neuron.ref_delay)
    g.create_dataset("neuron/gradedSpike", data=neuron.graded_spike)
