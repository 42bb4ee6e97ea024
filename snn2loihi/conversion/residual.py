"""Residual blocks: the standard post-addition block and the restructured block.

A converted basic block ``y = ReLU(A(h) + B(x))``, ``h = ReLU(C(x))`` (A, C the BN-folded
3×3 convs, B the identity or the BN-folded 1×1 projection) can be laid out on the chip in
two ways. Both compute the same ANN function; they differ in what the neuron that does the
addition receives and when:

- ``standard``: populations x → h → y, and a skip synapse x → y. On the chip every synapse
  adds one step, so the shortcut current reaches y one step *before* the branch current
  that belongs to the same input (x → h → y takes two), and y also integrates one step of
  x's activity after x's window (that step reaches y inside y's window). Both are
  *inconstant* input currents: the deviation error of §4.3 in shared/research/algorithms.md.
- ``restructured``: the shortcut gets its own IF population r, a relay that copies x's
  spikes (weight = threshold, θ_r = θ_x, so each x spike makes exactly one r spike one step
  later; a stride-2 block relays x[::2, ::2]). r shares h's layer (channels
  ``[h ; r]``, same geometry: r is the centre tap of C's kernel), and y reads ``[h ; r]``
  through one synapse: A on h's channels, B (stride 1 now) at the centre tap on r's. Both
  paths into y are spike-rate-coded currents with matched latency (two synapse hops), and
  the whole network becomes a plain chain: no skip layer is needed on the chip, and the
  fast aligned simulation applies.

The relay costs C_x extra neurons per block and caps that layer's weight scale so that
the relay weight (1.0 in threshold units) fits the 8-bit grid (scale ≤ 128). Whether this
is the restructuring of Meng et al. 2022 (TTRBR) is unknown (their paper could not be
retrieved, see the research notes); it is one block that meets the stated goal.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .errors import ConversionError
from .graph import Affine, Graph, Node


def standard(graph: Graph) -> Graph:
    """The graph as it is: the post-addition neuron reads the shortcut through a skip."""
    return graph


def restructured(graph: Graph) -> Graph:
    """Insert a relay node beside every residual branch's first layer (see module doc).

    Returns a new graph: for every node y with ops [A from h, B from x] where h = ReLU(C(x))
    directly precedes y, a node r = relay(x) is placed right after h (so h and r form one
    layer), and y's ops become [A from h, B' from r].
    """
    old = graph.nodes
    new = Graph([])
    index: dict = {}  # old node index → new node index
    for i, node in enumerate(old):
        branch, short = _split(node, i - 1)
        if branch is not None:
            relay, shortcut = _relay(old, i - 1, short)
            relay = replace(relay, source=index[short.source])
            x_shape = (1,) + tuple(old[short.source].shape)
            shape = tuple(relay(torch.zeros(x_shape, dtype=torch.float64)).shape[1:])
            r = new.add(Node(f"{node.name}.relay", [relay], relu=True, shape=shape, relay_of=relay.source))
            index[i] = new.add(replace(node, ops=[replace(branch, source=index[i - 1]),
                                                  replace(shortcut, source=r)]))
        else:
            index[i] = new.add(replace(node, ops=[replace(op, source=index[op.source]) for op in node.ops]))
    return new


def _split(node: Node, h: int):
    """(branch op from h, shortcut op from an earlier node) when ``node`` adds the two."""
    if len(node.ops) != 2 or h < 1:
        return None, None
    a, b = node.ops
    if a.source == h and b.source < h:
        return a, b
    if b.source == h and a.source < h:
        return b, a
    return None, None


def _relay(nodes: list, h: int, short: Affine) -> tuple[Affine, Affine]:
    """The relay operator (x → r, on h's grid) and the shortcut re-based on r (stride 1)."""
    first = nodes[h].ops
    if len(first) != 1 or first[0].source != short.source:
        raise ConversionError(f"{nodes[h].name}: cannot restructure: the branch's first layer must read only "
                              f"the block input")
    conv = first[0]
    c_x = nodes[short.source].shape[0]
    eye = torch.eye(c_x, dtype=torch.float64)
    if conv.is_dense or short.is_dense:
        if not (conv.is_dense and short.is_dense):
            raise ConversionError(f"{nodes[h].name}: cannot restructure a block mixing dense and conv layers")
        return Affine(short.source, eye), short
    k, stride = tuple(conv.weight.shape[-2:]), tuple(short.stride)
    if tuple(short.weight.shape[-2:]) != (1, 1) or tuple(short.padding) != (0, 0) \
            or tuple(conv.stride) != stride or tuple(conv.dilation) != (1, 1) \
            or any(2 * p != n - 1 for p, n in zip(conv.padding, k)):
        raise ConversionError(f"{nodes[h].name}: cannot restructure: needs a 1x1 shortcut with the stride of a "
                              f"'same'-padded first conv")
    return Affine(short.source, eye.reshape(c_x, c_x, 1, 1), None, stride=stride), replace(short, stride=(1, 1))
