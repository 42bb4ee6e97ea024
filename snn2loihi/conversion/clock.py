"""Clocked biases: every layer's bias arrives as synaptic input exactly during its window.

On the chip a bias is a constant current from step 0, but the layer at depth d gets its
first input only at step d. ``bias="timed"`` (:mod:`~.build`) pre-compensates with the
initial voltage ``u0 - d·b'``, which is capped at the threshold so that the neuron cannot
fire early. A negative bias with ``d·|b'| > 1 - u0`` therefore starts its window short by
the difference. In deep networks (d ≈ 20 … 110) most negative-bias channels are in that
case, and that error grows with depth.

``bias="clock"`` removes the problem by construction. Layer 1 gets one extra channel, a
*clock*: bias 1 threshold per step, u0 = 1/2 (timed like any layer-1 bias, d = 1). It fires
every step from the start of its window. Every later layer ℓ (but the output) gets a clock
channel too, a relay of layer ℓ-1's clock (weight 1 threshold, one spike per input spike).
So layer ℓ-1's clock delivers exactly one spike per step to layer ℓ from the first step of
ℓ's window. Layer ℓ's biases b become synaptic weights from that clock:

- conv layer, kernel k, 'same' padding: b at the centre tap;
- conv layer without padding (e.g. pooling): b / k² on every tap;
- dense layer: b on the first feature of the clock's flattened channel.

In the ANN the clock is a node of activation 1, so the graph computes the same function
(``Graph.forward`` is unchanged, tested). On the chip each layer from 2 on integrates
``u0 + Σ_t W·s_t + T·b'`` over its window, the ideal delay-free neuron, with no cap.
Layer 1 keeps its bias current: d = 1, so it is short only when ``b' < u0 - 1``.

Clock spikes after a window are harmless. Layer ℓ's spikes emitted after its window reach
layer ℓ+1 after ℓ+1's window. The output layer gets no clock, so its shape is the class count,
and neither does any layer after the last one with a bias (a bias-free ANN stays as it is).

Cost: one channel (a (1, H, W) map or one neuron) per layer. The bias weights share the
layer's 8-bit weight grid.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .build import plan
from .errors import ConversionError
from .graph import Affine, Graph, Node


def clocked(graph: Graph) -> Graph:
    """``graph`` with the biases of layers 2 … output moved onto a clock node in the layer
    before (see module doc): layers 1 … ℓ-1 get a clock, ℓ the last layer with a bias (no
    clock at all when only layer 1 has biases)."""
    pops = plan(graph)
    pop_of = {n: q for q, pop in enumerate(pops) for n in pop.nodes}
    # the clock chain runs up to the layer before the last one with a bias
    last = max((q for q in range(2, len(pops)) for n in pops[q].nodes
                if any(op.bias is not None for op in graph.nodes[n].ops)), default=1)
    new, index, clock = Graph([]), {}, {}
    for i, node in enumerate(graph.nodes):
        q = pop_of[i]
        ops = [replace(op, source=index[op.source], bias=None if q >= 2 else op.bias) for op in node.ops]
        biases = [op.bias for op in node.ops if op.bias is not None]
        if q >= 2 and biases:
            ops.append(_tap(clock[q - 1], new, _main(node, graph, pop_of, q), sum(biases), node.name))
        index[i] = new.add(replace(node, ops=ops, relay_of=None if node.relay_of is None else index[node.relay_of]))
        if i == pops[q].nodes[-1] and 1 <= q < last:
            first = graph.nodes[pops[q].nodes[0]]
            main = _main(first, graph, pop_of, q)
            if q == 1:  # a bias-only neuron: zero weights from the input, bias 1
                op = replace(_tap(index[main.source], new, main, torch.zeros(1), f"clock{q}"),
                             bias=torch.ones(1, dtype=torch.float64))
            else:  # a relay of the previous clock
                op = _tap(clock[q - 1], new, main, torch.ones(1), f"clock{q}")
            clock[q] = new.add(Node(f"clock{q}", [op], relu=True, shape=(1,) + tuple(first.shape[1:]), clock=True))
    return new


def has_bias(graph: Graph, n: int) -> bool:
    """Whether node ``n`` has a bias: a bias current or a tap on a clock."""
    return any(op.bias is not None or graph.nodes[op.source].clock for op in graph.nodes[n].ops)


def add_bias(graph: Graph, n: int, delta: torch.Tensor) -> None:
    """Add ``delta`` (C,) per step to the bias of node ``n`` (which must :func:`has_bias`),
    in place, where its bias arrives: on its clock tap (``bias="clock"``), else on its bias
    current."""
    if not has_bias(graph, n):
        raise ConversionError(f"{graph.nodes[n].name} has no bias to add to")
    node = graph.nodes[n]
    delta = delta.to(torch.float64)
    ops = list(node.ops)
    k = next((k for k, op in enumerate(ops) if graph.nodes[op.source].clock), None)
    if k is not None:
        ops[k] = replace(ops[k], weight=ops[k].weight + _tap(ops[k].source, graph, ops[k], delta, node.name).weight)
    else:
        k = next(k for k, op in enumerate(ops) if op.bias is not None)
        ops[k] = replace(ops[k], bias=ops[k].bias + delta)
    graph.nodes[n] = replace(node, ops=ops)


def _main(node: Node, graph: Graph, pop_of: dict, q: int) -> Affine:
    """The node's operator from the layer before (its geometry is the clock's)."""
    op = next((op for op in node.ops if pop_of[op.source] == q - 1), None)
    if op is None:
        raise ConversionError(f"{node.name}: reads nothing from the layer before; bias='clock' needs it")
    return op


def _tap(source: int, graph: Graph, like: Affine, values: torch.Tensor, name: str) -> Affine:
    """``values`` (C_out,) per clock spike, through an operator with ``like``'s geometry
    reading channel 0 of node ``source`` (a clock: one channel of ones)."""
    values = values.to(torch.float64)
    src_shape = graph.nodes[source].shape
    if like.is_dense:
        weight = torch.zeros(len(values), int(torch.tensor(src_shape).prod()), dtype=torch.float64)
        weight[:, 0] = values
        return Affine(source, weight)
    k = tuple(like.weight.shape[-2:])
    weight = torch.zeros((len(values), src_shape[0]) + k, dtype=torch.float64)
    if tuple(like.dilation) != (1, 1):
        raise ConversionError(f"{name}: bias='clock' needs undilated convolutions")
    if all(2 * p + 1 == n for p, n in zip(like.padding, k)):
        weight[:, 0, k[0] // 2, k[1] // 2] = values
    elif tuple(like.padding) == (0, 0):
        weight[:, 0] = (values / (k[0] * k[1])).reshape(-1, 1, 1)
    else:
        raise ConversionError(f"{name}: bias='clock' needs 'same' or no padding, found {tuple(like.padding)} "
                              f"for kernel {k}; use bias='timed'")
    return Affine(source, weight, None, stride=tuple(like.stride), padding=tuple(like.padding))
