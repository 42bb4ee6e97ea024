"""Read a netx HDF5 file (stock lava-dl layers plus our extensions) into a :class:`Network`.

The format is documented in ``docs/netx_format.md``. Every problem, from a missing file
to a weight outside the chip's range, raises :class:`NetxFormatError` naming the file,
the layer and the problem; nothing from h5py escapes.
"""
from __future__ import annotations

import os
from typing import Optional

import h5py
import numpy as np

from ..errors import NetxFormatError
from ..ir import (ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec,
                  PoolLayer, Skip)

#: Layer types that netx knows but this toolkit does not run, with the reason.
#: What h5py and numpy raise on malformed or corrupted content (h5py raises RuntimeError
#: for damaged B-tree/symbol-table nodes).
_H5_ERRORS = (KeyError, ValueError, TypeError, OSError, IndexError, RuntimeError)

UNSUPPORTED_LAYERS = {
    "dense_rec": "recurrent dense layers are not supported",
    "convT": "transposed convolution is not supported",
    "unpool": "unpooling is not supported",
    "average": "'average' layers are not supported",
    "concat": "'concat' layers are not supported",
}


def read_network(path: str | os.PathLike) -> Network:
    """Load ``path`` into a validated :class:`Network`.

    Raises:
        NetxFormatError: the file is missing, not HDF5, or not a network we can run.
    """
    path = str(path)
    if not os.path.exists(path):
        raise NetxFormatError(path, "no such file")
    if os.path.isdir(path):
        raise NetxFormatError(path, "is a directory, not a netx file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise NetxFormatError(path, f"not a readable HDF5 file ({_short(err)})") from None
    try:
        with handle:
            return _read(handle, path)
    except NetxFormatError:
        raise
    except _H5_ERRORS as err:
        raise NetxFormatError(path, _short(err)) from None


def _read(handle: h5py.File, path: str) -> Network:
    if "layer" not in handle or not isinstance(handle["layer"], h5py.Group):
        raise NetxFormatError(path, "no 'layer' group: not a netx network file")
    group = handle["layer"]
    keys = list(group.keys())
    if not keys:
        raise NetxFormatError(path, "the 'layer' group is empty")
    if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
        raise NetxFormatError(path, f"layer names must be 0..{len(keys) - 1}, found {sorted(keys)[:8]}")
    layers: list = []
    shape: Optional[tuple] = None
    for i in range(len(keys)):
        where = f"layer {i}"
        try:
            g = group[str(i)]
            if not isinstance(g, h5py.Group):
                raise NetxFormatError(path, f"{where} is not a group")
            layer = _read_layer(g, shape, first=(i == 0))
        except _H5_ERRORS as err:
            raise NetxFormatError(path, f"{where}: {_short(err)}") from None
        layers.append(layer)
        shape = layer.out_shape
    try:
        return Network(layers, source=path)
    except ValueError as err:
        raise NetxFormatError(path, str(err)) from None


def _read_layer(g: h5py.Group, in_shape: Optional[tuple], first: bool):
    kind = _string(g, "type")
    if kind in UNSUPPORTED_LAYERS:
        raise ValueError(UNSUPPORTED_LAYERS[kind])
    if first != (kind == "input"):
        raise ValueError("the first layer must be 'input' (and only the first)")
    if kind == "input":
        shape = tuple(_ints(g, "shape"))
        neuron = _neuron(g) if "neuron" in g else None
        return InputLayer(shape, neuron,
                          transform_weight=_scalar(g, "weight", 64),
                          transform_bias=_scalar(g, "bias", 0))
    if kind == "flatten":
        return FlattenLayer(in_shape)
    if "delay" in g:
        raise ValueError("synaptic delays ('delay') are not supported")
    if kind == "dense":
        if "weight" not in g:
            raise ValueError("missing dataset 'weight' (complex weights are not supported)")
        weight = _array(g, "weight")
        if weight.ndim not in (1, 2):
            raise ValueError(f"dense weight must be a 1-D or 2-D array, found shape {weight.shape}")
        n_out = int(np.prod(_ints(g, "shape"))) if "shape" in g else weight.shape[0]
        if weight.ndim == 1:
            if weight.size % n_out:
                raise ValueError(f"weight of {weight.size} values does not fit {n_out} outputs")
            weight = weight.reshape(n_out, -1)
        if weight.shape[0] != n_out:
            raise ValueError(f"weight has {weight.shape[0]} rows but shape says {n_out} neurons")
        _check_weight_range(weight)
        return DenseLayer(weight, _neuron(g) if "neuron" in g else None, _optional(g, "bias"),
                          skip=_skip(g), v_init=_optional(g, "vInit"),
                          fire_window=_optional(g, "fireWindow"))
    if kind == "conv":
        weight = _array(g, "weight")
        if weight.ndim == 5:
            if weight.shape[4] != 1:
                raise ValueError(f"5-D conv weight {weight.shape} must have a last axis of 1")
            weight = weight[..., 0]
        _check_weight_range(weight)
        layer = ConvLayer(in_shape, weight, _neuron(g), stride=_ints(g, "stride"),
                          padding=_ints(g, "padding"), dilation=_ints(g, "dilation"),
                          groups=_scalar(g, "groups", 1), bias=_optional(g, "bias"),
                          skip=_skip(g), v_init=_optional(g, "vInit"),
                          fire_window=_optional(g, "fireWindow"))
        _check_declared_shape(g, layer.out_shape)
        return layer
    if kind == "pool":
        weight = _array(g, "weight")
        if weight.size != int(np.prod(weight.shape[-2:])) or weight.ndim < 2:
            raise ValueError(f"pool weight must hold one (kH, kW) kernel, found shape {weight.shape}")
        _check_weight_range(weight)
        layer = PoolLayer(in_shape, weight.reshape(weight.shape[-2:]), _neuron(g),
                          stride=_ints(g, "stride"), padding=_ints(g, "padding"),
                          dilation=_ints(g, "dilation"), v_init=_optional(g, "vInit"),
                          fire_window=_optional(g, "fireWindow"))
        _check_declared_shape(g, layer.out_shape)
        return layer
    raise ValueError(f"unknown layer type {kind!r}")


def _skip(g: h5py.Group) -> Optional[Skip]:
    """The layer's ``skip`` group (a second synapse group from an earlier layer), or None."""
    if "skip" not in g:
        return None
    k = g["skip"]
    if not isinstance(k, h5py.Group):
        raise ValueError("'skip' must be a group")
    weight = _array(k, "weight")
    if weight.ndim == 5:
        if weight.shape[4] != 1:
            raise ValueError(f"5-D skip weight {weight.shape} must have a last axis of 1")
        weight = weight[..., 0]
    _check_weight_range(weight)
    try:
        exp = _scalar(k, "weightExp", 0)
        if weight.ndim == 2:
            return Skip(_scalar(k, "source"), weight, weight_exp=exp)
        return Skip(_scalar(k, "source"), weight, stride=_ints(k, "stride"), padding=_ints(k, "padding"),
                    dilation=_ints(k, "dilation"), groups=_scalar(k, "groups", 1), weight_exp=exp)
    except ValueError as err:
        raise ValueError(f"skip: {err}") from None


def _neuron(g: h5py.Group) -> NeuronSpec:
    n = g["neuron"]
    if not isinstance(n, h5py.Group):
        raise ValueError("'neuron' must be a group")
    kind = _string(n, "type")
    if kind in ("SDNN", "RF_PHASE", "RF_IZHIKEVICH") or kind not in ("CUBA", "LOIHI", "CUBA_SOFT"):
        raise ValueError(f"unsupported neuron type {kind!r} (supported: CUBA, LOIHI, CUBA_SOFT)")
    if _scalar(n, "messageBits", 0):
        raise ValueError("graded spikes (neuron/messageBits > 0) are not supported")
    try:
        return NeuronSpec(kind=kind, i_decay=_scalar(n, "iDecay"), v_decay=_scalar(n, "vDecay"),
                          vth_mant=_scalar(n, "vThMant"), ref_delay=_scalar(n, "refDelay", 1),
                          graded_spike=bool(_scalar(n, "gradedSpike", 0)))
    except ValueError as err:
        raise ValueError(f"neuron: {err}") from None


def _check_weight_range(weight: np.ndarray) -> None:
    lo, hi = int(weight.min(initial=0)), int(weight.max(initial=0))
    limit = (-256, 254) if lo < 0 < hi else (-256, 255)
    if lo < limit[0] or hi > limit[1]:
        raise ValueError(f"weights span [{lo}, {hi}], outside the chip's 8-bit mantissa range "
                         f"[{limit[0]}, {limit[1]}]")


def _check_declared_shape(g: h5py.Group, computed: tuple) -> None:
    if "shape" in g:
        declared = tuple(_ints(g, "shape"))
        if declared != tuple(computed):
            raise ValueError(f"declared shape {declared} differs from the computed output {tuple(computed)}")


def _dataset(g: h5py.Group, key: str) -> h5py.Dataset:
    if key not in g:
        raise ValueError(f"missing dataset '{key}'")
    d = g[key]
    if not isinstance(d, h5py.Dataset):
        raise ValueError(f"'{key}' must be a dataset")
    if d.size > 1 << 26:
        raise ValueError(f"dataset '{key}' is too large ({d.size} values)")
    return d


def _array(g: h5py.Group, key: str) -> np.ndarray:
    value = np.asarray(_dataset(g, key)[()])
    if value.dtype.kind == "b":
        value = value.astype(np.int64)
    if value.dtype.kind not in "iuf":
        raise ValueError(f"dataset '{key}' must be numeric, found dtype {value.dtype}")
    if value.dtype.kind == "f" and (not np.all(np.isfinite(value)) or not np.array_equal(value, np.round(value))):
        raise ValueError(f"dataset '{key}' must hold integer values")
    if np.abs(value).max(initial=0) > 1 << 30:
        raise ValueError(f"dataset '{key}' holds values beyond 2^30")
    return value.astype(np.int64)


def _ints(g: h5py.Group, key: str) -> list:
    return [int(v) for v in np.atleast_1d(_array(g, key)).ravel()]


def _scalar(g: h5py.Group, key: str, default: Optional[int] = None) -> int:
    if key not in g and default is not None:
        return default
    value = np.atleast_1d(_array(g, key)).ravel() if key in g else None
    if value is None or value.size != 1:
        raise ValueError(f"dataset '{key}' must be a single integer")
    return int(value[0])


def _optional(g: h5py.Group, key: str) -> Optional[np.ndarray]:
    return _array(g, key) if key in g else None


def _string(g: h5py.Group, key: str) -> str:
    value = _dataset(g, key)[()]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"'{key}' must be one string")
        value = value.ravel()[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"'{key}' is not an ASCII string") from None
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, found {type(value).__name__}")
    return value


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]
