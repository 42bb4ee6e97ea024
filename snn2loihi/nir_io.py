"""NIR interchange: export our networks to NIR graphs, import NIR graphs into our blocks.

NIR (the Neuromorphic Intermediate Representation, ``nir`` on PyPI) describes neurons as
continuous-time ODEs. Both directions use the forward-Euler step ``dt`` that the
exporters of snnTorch and Lava's NIR scripts use (``dt = 1e-4``); our per-step dynamics
(:class:`snn2loihi.ir.NeuronSpec`, in units where the threshold is θ = vThMant / 64)::

    u[t] = (1 - cd) · u[t-1] + g · (W s[t] + b)      cd = current decay, g = input gain
    v[t] = (1 - vd) · v[t-1] + u[t]                  vd = voltage decay
    s = v > θ;  v = 0 (hard) or v - θ (soft)

map onto NIR's neurons as

- ``IF(r, v_threshold, v_reset)``: cd = 1, vd = 0, g = r (r is the per-step gain, as
  sinabs' IAF exports it);
- ``LIF(tau, r, v_leak, v_threshold, v_reset)``: cd = 1, vd = dt/τ, g = r·dt/τ
  (snnTorch's ``Leaky`` exports τ = dt/(1-β), r = τ/dt, so g = 1 and vd = 1 - β);
- ``CubaLIF(tau_syn, tau_mem, r, v_leak, v_threshold, v_reset, w_in)``: cd = dt/τ_syn,
  vd = dt/τ_mem, g = w_in·(dt/τ_syn)·r·(dt/τ_mem) (snnTorch's ``Synaptic``: g = 1).

Synapses: ``Linear``/``Affine`` ↔ dense, ``Conv2d`` ↔ conv, ``SumPool2d``/``AvgPool2d``
(+ an optional ``Scale``) ↔ pool, ``Flatten`` ↔ flatten. An ``Affine``/``Conv2d`` bias
enters the neuron's input each step (slayer's synapse bias); Loihi adds its bias to v,
which is the same only when the current is flushed every step (cd = 1).

**Soft reset is not expressible in NIR** (every NIR neuron resets to ``v_reset``). Export
writes ``v_reset = 0`` — a hard reset for every other toolkit — warns loudly, and marks the
node with metadata ``snn2loihi_reset = "subtract"`` so that our importer restores the soft
reset. Graphs from other toolkits import with the reset they state (snnTorch and
SpikingJelly write ``v_reset = 0`` even for their subtractive reset: pass
``reset="soft"`` to get it back).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .atomic import atomic_path
from .errors import Snn2LoihiError
from .ir import ConvLayer, DenseLayer, FlattenLayer, Network, PoolLayer, layer_neuron

#: Forward-Euler step of snnTorch's exporter and Lava's NIR scripts.
NIR_DT = 1e-4
#: Node metadata key that carries our reset through NIR.
RESET_KEY = "snn2loihi_reset"
#: State scale of our integers: u, v and θ are in units of vThMant / 64.
_UNIT = 64.0
_DECAY_UNITY = 4096


class NirError(Snn2LoihiError):
    """A NIR file or graph cannot be read, written or mapped; the message says why."""


class SoftResetWarning(UserWarning):
    """NIR has no subtractive reset: the exported graph resets to 0."""


def _nir():
    try:
        import nir
    except ImportError:
        raise NirError("the nir package is not installed: pip install 'snn2loihi[nir]'") from None
    return nir


# --------------------------------------------------------------------------- export


def _neuron_node(nir, layer, name: str, shape: tuple, dt: float):
    """The NIR neuron of one IR layer (parameters broadcast to the layer's shape)."""
    neuron = layer_neuron(layer)
    if isinstance(layer, DenseLayer) and layer.neuron is None:
        raise NirError(f"layer {name}: netx readout layers (dense without neuron) have no NIR equivalent")
    ones = np.ones(shape)
    theta, i_d, v_d = neuron.vth_mant / _UNIT * ones, neuron.i_decay, neuron.v_decay
    meta = {RESET_KEY: "subtract"} if neuron.soft_reset else {}
    zeros = np.zeros(shape)
    if i_d == _DECAY_UNITY and v_d == 0:
        return nir.IF(r=ones, v_threshold=theta, v_reset=zeros, metadata=meta)
    if i_d == _DECAY_UNITY:
        tau = dt * _DECAY_UNITY / v_d
        return nir.LIF(tau=tau * ones, r=tau / dt * ones, v_leak=zeros, v_threshold=theta, v_reset=zeros,
                       metadata=meta)
    if i_d == 0 or v_d == 0:
        raise NirError(f"layer {name}: iDecay {i_d} with vDecay {v_d} has no NIR CubaLIF equivalent (a current that "
                       f"never decays or a membrane that never leaks needs an infinite time constant)")
    tau_syn, tau_mem = dt * _DECAY_UNITY / i_d, dt * _DECAY_UNITY / v_d
    return nir.CubaLIF(tau_syn=tau_syn * ones, tau_mem=tau_mem * ones, r=tau_mem / dt * ones, v_leak=zeros,
                       v_threshold=theta, v_reset=zeros, w_in=tau_syn / dt * ones, metadata=meta)


def _synapse_nodes(nir, layer, name: str) -> list:
    """NIR nodes of one IR layer's synapses (weights in units of vThMant / 64)."""
    bias = getattr(layer, "bias", None)
    if bias is not None and layer_neuron(layer).i_decay != _DECAY_UNITY:
        raise NirError(f"layer {name}: a Loihi bias drives v, which NIR can only express when the current is "
                       f"flushed every step (iDecay 4096)")
    b = None if bias is None else np.asarray(bias, float) / _UNIT
    if isinstance(layer, DenseLayer):
        from .sim.synapses import dense_weights

        dw = dense_weights(layer.weight)
        w = dw.effective * 2.0 ** dw.weight_exp / _UNIT  # what Lava's Dense multiplies with
        return [nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)]
    if isinstance(layer, ConvLayer):
        # nir types a Conv2d input as (weight.shape[1], H, W), wrong when groups > 1: leave the
        # shape to the graph's type inference then
        return [nir.Conv2d(input_shape=tuple(layer.in_shape[1:]) if layer.groups == 1 else None,
                           weight=layer.weight / _UNIT,
                           stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                           bias=np.zeros(layer.weight.shape[0]) if b is None else b)]
    c = layer.in_shape[0]
    taps = np.unique(layer.weight)
    if taps.size == 1 and layer.dilation == (1, 1):
        return [nir.SumPool2d(kernel_size=np.array(layer.kernel), stride=np.array(layer.stride),
                              padding=np.array(layer.padding)),
                nir.Scale(scale=np.full(layer.out_shape, taps[0] / _UNIT))]
    weight = np.broadcast_to(layer.weight / _UNIT, (c, 1) + layer.kernel).copy()
    return [nir.Conv2d(input_shape=None, weight=weight, stride=layer.stride,
                       padding=layer.padding, dilation=layer.dilation, groups=c, bias=np.zeros(c))]


def network_to_nir(net: Network, dt: float = NIR_DT):
    """NIR graph of ``net`` (a sequential chain ``input → … → output``).

    Soft-reset layers are written with ``v_reset = 0`` and metadata
    ``snn2loihi_reset = "subtract"``; a :class:`SoftResetWarning` names them.

    Raises:
        NirError: a layer has no NIR equivalent (input neuron, readout, unsupported
            decay/bias combination, unknown layer type).
    """
    nir = _nir()
    if net.input.neuron is not None:
        raise NirError("input layers with a neuron (integer input currents) have no NIR equivalent")
    nodes = {"input": nir.Input(input_type={"input": np.array(net.input.shape)})}
    chain, soft = ["input"], []
    for i, layer in enumerate(net.layers[1:], start=1):
        if isinstance(layer, FlattenLayer):
            nodes[f"{i}.flatten"] = nir.Flatten(input_type={"input": np.array(layer.in_shape)}, start_dim=0, end_dim=-1)
            chain.append(f"{i}.flatten")
            continue
        if not isinstance(layer, (DenseLayer, ConvLayer, PoolLayer)):
            raise NirError(f"layer {i}: type {type(layer).__name__} has no NIR export")
        if getattr(layer, "skip", None) is not None or getattr(layer, "v_init", None) is not None:
            raise NirError(f"layer {i}: residual skips and v_init are not exported to NIR (a chain of layers only)")
        name = f"{i}:{type(layer).__name__.replace('Layer', '').lower()}"
        for k, node in enumerate(_synapse_nodes(nir, layer, name)):
            nodes[f"{i}.synapse{k or ''}"] = node
            chain.append(f"{i}.synapse{k or ''}")
        nodes[f"{i}.neuron"] = _neuron_node(nir, layer, name, tuple(layer.out_shape), dt)
        chain.append(f"{i}.neuron")
        if layer_neuron(layer).soft_reset:
            soft.append(name)
    nodes["output"] = nir.Output(output_type={"output": np.array(net.output_shape)})
    chain.append("output")
    if soft:
        warnings.warn(
            f"NIR has no subtractive (soft) reset: layers {', '.join(soft)} are written with v_reset = 0, a HARD "
            f"reset for every other toolkit, which fires less than the soft-reset network you trained. snn2loihi's "
            f"importer restores the soft reset from node metadata '{RESET_KEY}'. Measure the cost of a hard reset "
            f"with `snn2loihi deploy NET --check-only --input X.npy`.", SoftResetWarning, stacklevel=2)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata={"exporter": "snn2loihi",
                                                                                          "dt": dt})
    return graph


def write_nir(net: Network, path: str, dt: float = NIR_DT) -> None:
    """Write ``net`` as a NIR HDF5 file (see :func:`network_to_nir`)."""
    graph = network_to_nir(net, dt)
    with atomic_path(path) as tmp:
        _nir().write(tmp, graph)


# --------------------------------------------------------------------------- import


def read_nir(path: str):
    """Read a NIR file; every failure is a one-line :class:`NirError` naming the file."""
    nir = _nir()
    if not os.path.isfile(path):
        raise NirError(f"{path}: no such file")
    try:
        # our importer tracks shapes itself; nir's own type check rejects grouped convs
        # (it types a Conv2d input as (weight.shape[1], H, W))
        return nir.read(path, type_check=False)
    except Exception as err:  # h5py, KeyError, ValueError, AssertionError from nir's checks
        detail = str(err).splitlines()[0][:200] if str(err) else ""
        raise NirError(f"{path}: not a readable NIR graph ({type(err).__name__}: {detail})") from None


def _uniform(value, what: str, node: str) -> float:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise NirError(f"node {node}: {what} must be finite, found {arr[:4].tolist()}")
    if not np.allclose(arr, arr[0], rtol=1e-6, atol=0):
        raise NirError(f"node {node}: {what} differs between neurons; a block has one neuron per layer")
    return float(arr[0])


def _text(value) -> str:
    return value.decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


@dataclass
class _Neuron:
    current_decay: float
    voltage_decay: float
    gain: float
    threshold: float
    soft: bool


def _neuron_from_node(node, name: str, dt: float, reset: str) -> _Neuron:
    """Our per-step parameters of one NIR neuron node (see the module docstring)."""
    kind = type(node).__name__
    threshold = _uniform(node.v_threshold, "v_threshold", name)
    if _uniform(node.v_reset, "v_reset", name) != 0:
        raise NirError(f"node {name}: v_reset = {_uniform(node.v_reset, 'v_reset', name):g}; Loihi resets to 0")
    if kind != "IF" and _uniform(node.v_leak, "v_leak", name) != 0:
        raise NirError(f"node {name}: v_leak ≠ 0 (a constant drive) is not supported; fold it into a bias")
    if kind == "IF":
        cd, vd, gain = 1.0, 0.0, _uniform(node.r, "r", name)
    elif kind == "LIF":
        vd = dt / _uniform(node.tau, "tau", name)
        cd, gain = 1.0, _uniform(node.r, "r", name) * vd
    else:  # CubaLIF
        cd, vd = dt / _uniform(node.tau_syn, "tau_syn", name), dt / _uniform(node.tau_mem, "tau_mem", name)
        gain = _uniform(node.w_in, "w_in", name) * cd * _uniform(node.r, "r", name) * vd
    for what, value in (("dt / tau_syn", cd), ("dt / tau", vd)):
        if not 0.0 <= value <= 1.0 + 1e-9:
            raise NirError(f"node {name} ({kind}): {what} = {value:g} is outside [0, 1]; the time constant is "
                           f"shorter than dt = {dt:g} (pass the exporter's dt)")
    if threshold <= 0:
        raise NirError(f"node {name}: v_threshold must be positive, found {threshold:g}")
    meta = {k: _text(v) for k, v in (getattr(node, "metadata", None) or {}).items()}
    soft = {"graph": meta.get(RESET_KEY) == "subtract", "soft": True, "hard": False}[reset]
    return _Neuron(min(cd, 1.0), min(vd, 1.0), gain, threshold, soft)


def _choose_scale(values: list, threshold: float) -> int:
    """Weight scale (power of two): the smallest s >= 64 at which every weight is on
    slayer's 8-bit grid (w·s an even integer in [-256, 254]) and θ·s, b·s are integers;
    else the largest s with max|w|·s <= 254 (most resolution), at least 1."""
    flat = np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(1)
    w_max = float(np.abs(flat).max(initial=0.0))
    for k in range(6, 13):
        s = 1 << k
        ws, ts = flat * s, threshold * s
        if (np.allclose(ws, 2 * np.round(ws / 2), atol=1e-9) and w_max * s <= 254
                and abs(ts - round(ts)) < 1e-9 and ts < 1 << 17):
            return s
    fit = 254 / w_max if w_max > 0 else 64
    return int(max(1, min(1 << 12, 2 ** math.floor(math.log2(fit)))))


@dataclass
class NirImport:
    """A NIR graph as our blocks.

    Attributes:
        model: the :class:`~snn2loihi.blocks.network.SpikingNetwork` (float weights;
            ``quantize_network`` turns it into Loihi integers, biases included).
        notes: what the import decided (resets, scales, dt).
    """

    model: object
    notes: list = field(default_factory=list)


def _chain(graph) -> list:
    """(name, node) from the input to the output; the graph must be a chain."""
    nir = _nir()
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise NirError(f"the graph has {len(inputs)} input nodes; only single-input chains are supported")
    successors: dict = {}
    for src, dst in graph.edges:
        successors.setdefault(src, []).append(dst)
    chain, name = [], inputs[0]
    while True:
        node = graph.nodes[name]
        if isinstance(node, nir.NIRGraph):
            raise NirError(f"node {name} is a subgraph (recurrent layer); only feed-forward chains are supported")
        chain.append((name, node))
        if isinstance(node, nir.Output):
            return chain
        nxt = successors.get(name, [])
        if len(nxt) != 1:
            raise NirError(f"node {name} has {len(nxt)} successors; only chains (no branches, no recurrence) are "
                           f"supported")
        if any(name == seen for seen, _ in chain[:-1]) or len(chain) > len(graph.nodes):
            raise NirError("the graph has a cycle")
        name = nxt[0]


def nir_to_blocks(graph, dt: float = NIR_DT, reset: str = "graph") -> NirImport:
    """Our blocks for a NIR graph (or the path of a NIR file).

    Supported chains: ``Input → ([Flatten] → Linear|Affine|Conv2d|SumPool2d|AvgPool2d →
    [Scale] → IF|LIF|CubaLIF)+ → Output``.

    Args:
        graph: a ``nir.NIRGraph`` or a path.
        dt: the exporter's Euler step (1e-4 for snnTorch and Lava's scripts).
        reset: ``"graph"`` (soft only where our metadata says so), ``"soft"`` or ``"hard"``.

    Raises:
        NirError: the graph uses a node or parameter our blocks cannot express.
    """
    from .blocks.network import SpikingNetwork
    from .blocks.soft_lif import Conv, Dense, Flatten, Pool

    nir = _nir()
    if reset not in ("graph", "soft", "hard"):
        raise NirError(f"reset must be graph, soft or hard, found {reset!r}")
    if isinstance(graph, (str, os.PathLike)):
        graph = read_nir(os.fspath(graph))
    chain = _chain(graph)
    in_shape = tuple(int(v) for v in np.ravel(chain[0][1].input_type["input"]))
    shape, blocks, notes, pending = in_shape, [], [f"dt = {dt:g}"], None
    weights = (nir.Linear, nir.Affine, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)
    for name, node in chain[1:]:
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Flatten):
            if pending is not None:
                raise NirError(f"node {name}: Flatten between a synapse and its neuron is not supported")
            blocks.append(Flatten())
            shape = (int(np.prod(shape)),)
        elif isinstance(node, weights):
            if pending is not None:
                raise NirError(f"node {name}: two synapse nodes ({pending[0]}, {name}) without a neuron in between; "
                               f"every synapse needs its own neurons")
            pending = (name, node, None)
        elif isinstance(node, nir.Scale):
            if pending is None or pending[2] is not None:
                raise NirError(f"node {name}: Scale must follow a synapse node directly")
            pending = (pending[0], pending[1], np.asarray(node.scale, dtype=np.float64))
        elif isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
            if pending is None:
                raise NirError(f"node {name}: a neuron without a synapse before it is not supported")
            neuron = _neuron_from_node(node, name, dt, reset)
            block, shape = _block(pending, neuron, shape, (Dense, Conv, Pool))
            blocks.append(block)
            notes.append(f"{pending[0]} + {name} ({type(node).__name__}) → {type(block).__name__} with "
                         f"{'soft' if neuron.soft else 'hard'} reset, scale {block.neuron.w_scale}")
            pending = None
        else:
            raise NirError(f"node {name}: {type(node).__name__} has no equivalent in our blocks (supported: Linear, "
                           f"Affine, Conv2d, SumPool2d, AvgPool2d, Scale, Flatten, IF, LIF, CubaLIF)")
    if pending is not None:
        raise NirError(f"node {pending[0]}: the graph ends with a synapse without neurons (e.g. a readout into Output "
                       f"or an LI node); our blocks need spiking neurons after every synapse")
    if not blocks:
        raise NirError("the graph has no layer")
    return NirImport(SpikingNetwork(in_shape, blocks), notes)


def _scale_per_output(scale: Optional[np.ndarray], n_out: int, name: str, spatial: bool) -> np.ndarray:
    """A Scale node folded into the synapse: one factor per output feature / channel."""
    if scale is None:
        return np.ones(n_out)
    s = scale.reshape(n_out, -1) if scale.size % n_out == 0 and scale.size >= n_out else None
    if s is None or not np.allclose(s, s[:, :1]):
        raise NirError(f"node {name}: Scale must be constant per output {'channel' if spatial else 'feature'}")
    return s[:, 0]


def _block(pending, neuron: _Neuron, shape: tuple, kinds):
    """Build the block for (synapse node, optional scale) + neuron; returns (block, out shape)."""
    import torch

    Dense, Conv, Pool = kinds
    nir = _nir()
    name, node, scale = pending
    params = {"threshold": neuron.threshold, "current_decay": neuron.current_decay,
              "voltage_decay": neuron.voltage_decay, "reset": "soft" if neuron.soft else "hard"}
    bias = None
    if isinstance(node, (nir.Linear, nir.Affine)):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != int(np.prod(shape)):
            raise NirError(f"node {name}: weight {w.shape} does not fit an input of {int(np.prod(shape))} features")
        factor = _scale_per_output(scale, w.shape[0], name, False) * neuron.gain
        w = w * factor[:, None]
        if isinstance(node, nir.Affine):
            bias = np.asarray(node.bias, dtype=np.float64).ravel() * factor
        s = _choose_scale([w] + ([bias] if bias is not None else []), neuron.threshold)
        block, out_shape = Dense(dict(params, scale=s), w.shape[1], w.shape[0]), (w.shape[0],)
        kernel = w.reshape(block.synapse.weight.shape)
    elif isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight, dtype=np.float64)
        if len(shape) != 3 or w.ndim != 4 or w.shape[1] * int(node.groups) != shape[0]:
            raise NirError(f"node {name}: conv weight {w.shape} with groups {node.groups} does not fit input {shape}")
        pad = node.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            elif all(int(s) == 1 for s in np.ravel(node.stride)) and w.shape[2] % 2 and w.shape[3] % 2:
                d = np.broadcast_to(np.ravel(node.dilation), (2,))
                pad = (int(d[0]) * (w.shape[2] - 1) // 2, int(d[1]) * (w.shape[3] - 1) // 2)
            else:
                raise NirError(f"node {name}: padding 'same' needs stride 1 and odd kernels")
        if node.input_shape is not None and tuple(int(v) for v in np.ravel(node.input_shape)) != tuple(shape[1:]):
            raise NirError(f"node {name}: input_shape {tuple(np.ravel(node.input_shape))} differs from the "
                           f"incoming {tuple(shape[1:])}")
        factor = _scale_per_output(scale, w.shape[0], name, True) * neuron.gain
        w = w * factor[:, None, None, None]
        b = np.asarray(node.bias, dtype=np.float64).ravel() * factor if node.bias is not None else None
        bias = b if b is not None and np.any(b != 0) else None
        s = _choose_scale([w] + ([bias] if bias is not None else []), neuron.threshold)
        pair = lambda v: tuple(int(x) for x in np.broadcast_to(np.ravel(v), (2,)))
        block = Conv(dict(params, scale=s), shape[0], w.shape[0], (w.shape[2], w.shape[3]), stride=pair(node.stride),
                     padding=pair(pad), dilation=pair(node.dilation), groups=int(node.groups))
        kernel = w.reshape(block.synapse.weight.shape)
        out_shape = None  # computed by the network
    else:  # SumPool2d / AvgPool2d: one tap weight for every channel
        k = tuple(int(v) for v in np.broadcast_to(np.ravel(node.kernel_size), (2,)))
        tap = neuron.gain / (k[0] * k[1] if isinstance(node, nir.AvgPool2d) else 1)
        if scale is not None:
            tap *= _uniform(scale, "Scale", name)
        s = _choose_scale([np.array([tap])], neuron.threshold)
        stride = tuple(int(v) for v in np.broadcast_to(np.ravel(node.stride), (2,)))
        padding = tuple(int(v) for v in np.broadcast_to(np.ravel(node.padding), (2,)))
        block = Pool(dict(params, scale=s), k, stride=stride, padding=padding)
        kernel = np.full(tuple(block.synapse.weight.shape), tap)
        out_shape = None
    with torch.no_grad():
        block.synapse.weight.copy_(torch.as_tensor(kernel, dtype=block.synapse.weight.dtype))
        if bias is not None:
            if neuron.current_decay < 1:
                raise NirError(f"node {name}: a bias into a decaying synaptic current (tau_syn > dt) has no Loihi "
                               f"equivalent (Loihi's bias drives v)")
            grid = np.round(bias * block.neuron.w_scale) / block.neuron.w_scale
            block.synapse.bias = torch.nn.Parameter(torch.as_tensor(grid, dtype=block.synapse.weight.dtype))
    if out_shape is None:
        out_shape = _conv_out(block, shape)
    return block, out_shape


def _conv_out(block, shape: tuple) -> tuple:
    """Output (C, H, W) of a conv/pool block for input ``shape``."""
    import torch

    with torch.no_grad():
        z = block.synapse(torch.zeros((1,) + tuple(shape) + (1,), dtype=block.synapse.weight.dtype))
    return tuple(int(v) for v in z.shape[1:-1])
