"""A feed-forward chain of blocks whose shapes are known from construction on.

slayer blocks learn their neuron shapes in the first forward pass, so exporting an
unused block fails (lava-dl #221). :class:`SpikingNetwork` runs one zero step through
the chain at construction, which fixes every shape and records each block's input shape
for the quantizer.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .soft_lif import Input


class SpikingNetwork(torch.nn.Module):
    """``Input(shape)`` followed by blocks; ``forward`` maps (N, *input_shape, T) spikes to
    the last block's spikes (N, F_out, T).

    Args:
        input_shape: (C, H, W) or (F,) of the input spikes.
        blocks: the blocks after the input, e.g. Conv, Pool, Flatten, Dense.
    """

    def __init__(self, input_shape: Sequence[int], blocks: Sequence[torch.nn.Module]):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.blocks = torch.nn.ModuleList([Input(self.input_shape), *blocks])
        self.in_shapes: list = []
        with torch.no_grad():
            x = torch.zeros((1,) + self.input_shape + (1,))
            for block in self.blocks:
                self.in_shapes.append(tuple(x.shape[1:-1]))
                block.snn2loihi_in_shape = self.in_shapes[-1]
                x = block(x)
        self.output_shape = tuple(x.shape[1:-1])

    def forward(self, x: torch.Tensor, record: bool = False):
        """Spikes of the last block; with ``record=True`` also every block's spikes."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return (x, outputs) if record else x

    def export_hdf5(self, path: str):
        """Quantize and write the network as a netx file; returns the quantization report."""
        from ..netx import write_network
        from ..quantize import quantize_network

        net, report = quantize_network(self)
        write_network(net, path)
        return report

    def neurons(self) -> list:
        """The neuron modules of all blocks that have one."""
        return [b.neuron for b in self.blocks if getattr(b, "neuron", None) is not None]

    def set_fixed_point(self, enabled: bool) -> None:
        """Switch between chip arithmetic (True: 8-bit weight grid, 12-bit decays, integer
        states) and the ideal float network (False: unquantized weights and dynamics)."""
        for block in self.blocks:
            neuron = getattr(block, "neuron", None)
            if neuron is None:
                continue
            neuron.fixed_point = enabled
            block.synapse.pre_hook_fx = neuron.quantize_8bit if enabled else None
