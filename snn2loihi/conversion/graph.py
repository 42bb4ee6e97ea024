"""The ANN as the converter sees it: rectified nodes fed by BN-folded linear operators.

Every activation tensor the SNN must reproduce is a :class:`Node`::

    a_n = ReLU( Σ_k op_k(a_{source_k}) )          (no ReLU for the output node)

or, for a node whose ANN activation is the clip-floor-shift function
(:class:`~snn2loihi.conversion.activation.ClipFloorShift`), ``a_n = h(Σ_k op_k(...))``
with the node's trained clip λ and levels L.

where each :class:`Affine` ``op`` is a convolution or a dense layer with batch norm folded
into its weight and bias. Node 0 is the input image (pixels in [0, 1]). Average pooling is a
depthwise convolution with weights 1/k²; a global average pool in front of a ``Linear`` is
folded into the dense weights (``W[o, c·H·W + p] = W[o, c] / (H·W)``); a residual block has
a node with two operators (branch + shortcut).

:func:`extract_graph` reads ``torch.nn.Sequential`` models made of ``Conv2d``, ``Linear``,
``BatchNorm1d/2d`` (after a conv/linear), ``ReLU`` or ``ClipFloorShift``, ``AvgPool2d``,
``AdaptiveAvgPool2d``, ``Flatten``, ``Dropout``, ``Identity`` and *basic blocks*: any module with attributes
``conv1, bn1, conv2, bn2, shortcut`` computing ``ReLU(bn2(conv2(ReLU(bn1(conv1(x))))) +
shortcut(x))`` (the two ReLUs may be ``ClipFloorShift`` modules held as ``act1`` and
``act2``), where ``shortcut`` is an identity (``nn.Identity`` or an empty
``nn.Sequential``) or ``nn.Sequential(Conv2d, BatchNorm2d)``. The graph's output is checked
against the model's own forward pass, so a structure the reader misunderstands is
refused rather than converted wrongly.

Shapes: node activations (N, C, H, W) or (N, F); weights in torch order.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .activation import ClipFloorShift, clip_floor_shift
from .errors import ConversionError


@dataclass
class Affine:
    """``out = W ⊛ in + b``: a convolution (weight (C_out, C_in/groups, kH, kW)) or a dense
    layer (weight (out, in); a (C, H, W) source is flattened in C order).

    Attributes:
        source: index of the node it reads.
        weight, bias: float tensors (bias (C_out,) or None).
        stride, padding, dilation, groups: conv geometry.
    """

    source: int
    weight: torch.Tensor
    bias: Optional[torch.Tensor] = None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    @property
    def is_dense(self) -> bool:
        return self.weight.dim() == 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to (N, *source_shape) activations."""
        w = self.weight.to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        if self.is_dense:
            return F.linear(x.reshape(x.shape[0], -1), w, b)
        return F.conv2d(x, w, b, stride=self.stride, padding=self.padding, dilation=self.dilation,
                        groups=self.groups)


@dataclass
class Node:
    """One activation tensor: ``ReLU(Σ op(a_source))`` (``relu=False``: the output logits).

    Attributes:
        name: readable id, e.g. ``"block3.h"``.
        ops: the operators summed into it (empty for the input node).
        relu: rectified (every node but the output).
        shape: (C, H, W) or (F,).
        relay_of: for relay nodes made by block restructuring, the node they copy.
        clip, levels: λ and L of a clip-floor-shift activation (None: a plain ReLU).
        clock: a clock node (activation 1, θ = 1: fires every step) that carries the biases
            of the next layer (:mod:`~.clock`).
    """

    name: str
    ops: list
    relu: bool
    shape: tuple = ()
    relay_of: Optional[int] = None
    clip: Optional[float] = None
    levels: Optional[int] = None
    clock: bool = False

    @property
    def shares_layer(self) -> bool:
        """Relays and clocks join the layer of the node before them (extra channels)."""
        return self.relay_of is not None or self.clock

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """The node's ANN activation of its summed input ``z``."""
        if not self.relu:
            return z
        return torch.relu(z) if self.clip is None else clip_floor_shift(z, self.clip, self.levels)


@dataclass
class Graph:
    """Nodes in topological order; node 0 is the input, the last node the output."""

    nodes: list = field(default_factory=list)

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    def forward(self, x: torch.Tensor) -> list:
        """All node activations for input ``x`` (N, *input_shape)."""
        acts = [x]
        for node in self.nodes[1:]:
            acts.append(node.activate(sum(op(acts[op.source]) for op in node.ops)))
        return acts

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1


def fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor], bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``bn(W·x + b)`` into ``W'·x + b'``:
    ``W' = W·γ/√(σ² + ε)``, ``b' = (b - μ)·γ/√(σ² + ε) + β`` (per output channel)."""
    if not bn.track_running_stats or bn.running_mean is None:
        raise ConversionError(f"{type(bn).__name__} without running statistics cannot be folded")
    gamma = bn.weight.detach() if bn.affine else torch.ones_like(bn.running_mean)
    beta = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
    k = gamma / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * k.reshape((-1,) + (1,) * (weight.dim() - 1)), (b - bn.running_mean) * k + beta


def _affine(module: nn.Module, source: int) -> Affine:
    w = module.weight.detach().clone().double()
    b = None if module.bias is None else module.bias.detach().clone().double()
    if isinstance(module, nn.Linear):
        return Affine(source, w, b)
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise ConversionError(f"{module}: only numeric zero padding is supported")
    return Affine(source, w, b, stride=tuple(module.stride), padding=tuple(module.padding),
                  dilation=tuple(module.dilation), groups=module.groups)


def _fold(op: Affine, bn) -> Affine:
    w, b = fold_bn(op.weight, op.bias, _double_bn(bn))
    return replace(op, weight=w, bias=b)


def _double_bn(bn):
    copy = type(bn)(bn.num_features, eps=bn.eps, affine=bn.affine).double()
    copy.load_state_dict(bn.state_dict())
    return copy


def is_basic_block(module: nn.Module) -> bool:
    """Duck type of a residual basic block (see the module docstring)."""
    return all(hasattr(module, name) for name in ("conv1", "bn1", "conv2", "bn2", "shortcut"))


def _shortcut(block: nn.Module, source: int, channels: int) -> Affine:
    sc = block.shortcut
    mods = [m for m in (sc.children() if isinstance(sc, nn.Sequential) else [sc]) if not isinstance(m, nn.Identity)]
    if not mods:  # identity: a depthwise 1x1 conv with weight 1
        return Affine(source, torch.ones(channels, 1, 1, 1, dtype=torch.float64), None, groups=channels)
    if len(mods) == 2 and isinstance(mods[0], nn.Conv2d) and isinstance(mods[1], nn.BatchNorm2d):
        return _fold(_affine(mods[0], source), mods[1])
    raise ConversionError(f"unsupported shortcut {sc}: use an identity or Sequential(Conv2d, BatchNorm2d)")


def extract_graph(ann: nn.Module, input_shape: tuple, check_x: Optional[torch.Tensor] = None,
                  tolerance: float = 1e-4) -> Graph:
    """Read ``ann`` (see the module docstring) into a :class:`Graph` of float64 operators.

    Args:
        ann: a ``torch.nn.Sequential`` (in eval mode for BN statistics).
        input_shape: (C, H, W) or (F,) of one sample.
        check_x: inputs (N, *input_shape) on which the graph must reproduce ``ann``'s output
            to ``tolerance`` (relative to the largest |output|); None skips the check.

    Raises:
        ConversionError: an unsupported module or structure, or a failed check.
    """
    if not isinstance(ann, nn.Sequential):
        raise ConversionError(f"the ANN must be a torch.nn.Sequential, found {type(ann).__name__}")
    graph = Graph([Node("input", [], relu=False, shape=tuple(input_shape))])
    modules = [m for m in ann.children() if not isinstance(m, (nn.Dropout, nn.Identity))]
    current, pending, pool = 0, None, None
    for k, m in enumerate(modules):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if pending is not None:
                raise ConversionError(f"module {k} ({type(m).__name__}): two linear layers without a ReLU between")
            pending = _affine(m, current)
            if pool is not None:
                pending, pool = _fold_pool(pending, pool, graph.nodes[current].shape), None
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if pending is None:
                raise ConversionError(f"module {k}: batch norm must follow a Conv2d or Linear")
            pending = _fold(pending, m)
        elif isinstance(m, (nn.ReLU, ClipFloorShift)):
            if pending is None:
                raise ConversionError(f"module {k}: {type(m).__name__} must follow a Conv2d or Linear (+ batch norm)")
            current = _close(graph, f"layer{k}", [pending], relu=True, act=m)
            pending = None
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            if pending is not None:
                raise ConversionError(f"module {k}: average pooling must follow a ReLU")
            kernel, stride, padding = _pool_geometry(m, graph.nodes[current].shape)
            nxt = next((n for n in modules[k + 1:] if not isinstance(n, nn.Flatten)), None)
            if isinstance(nxt, nn.Linear):
                pool = (kernel, stride, padding)  # folded into the dense weights
            else:
                c = graph.nodes[current].shape[0]
                weight = torch.full((c, 1) + kernel, 1.0 / (kernel[0] * kernel[1]), dtype=torch.float64)
                current = _close(graph, f"pool{k}", [Affine(current, weight, None, stride=stride, padding=padding,
                                                            groups=c)], relu=True)
        elif isinstance(m, nn.Flatten):
            continue
        elif is_basic_block(m):
            if pending is not None:
                raise ConversionError(f"module {k}: a residual block must follow a ReLU")
            h = _close(graph, f"block{k}.h", [_fold(_affine(m.conv1, current), m.bn1)], relu=True,
                       act=getattr(m, "act1", None))
            ops = [_fold(_affine(m.conv2, h), m.bn2), _shortcut(m, current, graph.nodes[current].shape[0])]
            current = _close(graph, f"block{k}.y", ops, relu=True, act=getattr(m, "act2", None))
        else:
            raise ConversionError(f"module {k} ({type(m).__name__}) is not supported by the converter")
    if pending is not None:
        _close(graph, "output", [pending], relu=False)
    if len(graph.nodes) < 2:
        raise ConversionError("the ANN has no layer")
    if check_x is not None:
        check(graph, ann, check_x, tolerance)
    return graph


def _pool_geometry(m: nn.Module, shape: tuple) -> tuple:
    if len(shape) != 3:
        raise ConversionError("average pooling needs (C, H, W) activations")
    if isinstance(m, nn.AdaptiveAvgPool2d):
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        if tuple(out) != (1, 1):
            raise ConversionError("only AdaptiveAvgPool2d(1) (global average pooling) is supported")
        return (shape[1], shape[2]), (shape[1], shape[2]), (0, 0)
    pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v))
    if m.ceil_mode or not m.count_include_pad and pair(m.padding) != (0, 0):
        raise ConversionError("AvgPool2d with ceil_mode or count_include_pad=False is not supported")
    return pair(m.kernel_size), pair(m.stride if m.stride is not None else m.kernel_size), pair(m.padding)


def _fold_pool(dense: Affine, pool: tuple, shape: tuple) -> Affine:
    """``Linear(avgpool(x))`` as one dense operator on the flattened (C, H, W) source."""
    kernel, stride, padding = pool
    c = shape[0]
    probe = torch.eye(c * shape[1] * shape[2], dtype=torch.float64).reshape((-1,) + tuple(shape))
    pooled = F.avg_pool2d(probe, kernel, stride, padding)  # (C·H·W, C, H', W'): how each input enters
    if dense.weight.shape[1] != pooled[0].numel():
        raise ConversionError(f"Linear expects {dense.weight.shape[1]} inputs, the pooled shape has "
                              f"{pooled[0].numel()}")
    return replace(dense, weight=dense.weight @ pooled.reshape(pooled.shape[0], -1).T)


def _close(graph: Graph, name: str, ops: list, relu: bool, act: Optional[nn.Module] = None) -> int:
    """Add the node ``act(Σ ops)`` (``act``: None or ReLU, or a ClipFloorShift whose λ and L
    the node keeps)."""
    if act is not None and not isinstance(act, (nn.ReLU, ClipFloorShift)):
        raise ConversionError(f"{name}: activation {type(act).__name__} is not supported (ReLU or ClipFloorShift)")
    clip = (float(act.clip.detach()), act.levels) if isinstance(act, ClipFloorShift) else (None, None)
    if clip[0] is not None and not clip[0] > 0:
        raise ConversionError(f"{name}: the ClipFloorShift clip must be positive, found {clip[0]:.4g}")
    src = graph.nodes[ops[0].source].shape
    probe = torch.zeros((1,) + tuple(src), dtype=torch.float64)
    try:
        shape = tuple(ops[0](probe).shape[1:])
        for op in ops[1:]:
            other = tuple(op(torch.zeros((1,) + tuple(graph.nodes[op.source].shape), dtype=torch.float64)).shape[1:])
            if other != shape:
                raise ConversionError(f"{name}: operator outputs {shape} and {other} cannot be added")
    except RuntimeError as err:
        raise ConversionError(f"{name}: {str(err).splitlines()[0]}") from None
    return graph.add(Node(name, ops, relu, shape, clip=clip[0], levels=clip[1]))


@torch.no_grad()
def check(graph: Graph, ann: nn.Module, x: torch.Tensor, tolerance: float = 1e-4) -> None:
    """Raise :class:`ConversionError` unless ``graph`` reproduces ``ann(x)``."""
    # In float64 like the graph: a float32 forward would move clip-floor-shift values that sit
    # at a rounding edge to the next level and fail a correct reading.
    expected = copy.deepcopy(ann).eval().double()(x.double())
    actual = graph.forward(x.double())[-1]
    err = float((actual.reshape(expected.shape) - expected).abs().max())
    scale = float(expected.abs().max().clamp_min(1e-12))
    if err > tolerance * scale:
        raise ConversionError(f"the converter's reading of the ANN differs from its forward pass by {err:.3g} "
                              f"(outputs up to {scale:.3g}): unsupported structure")
