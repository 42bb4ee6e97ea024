"""slayer blocks bound to the soft-reset LIF neuron (:mod:`snn2loihi.neuron.soft_lif`).

The same pattern as ``lava.lib.dl.slayer.block.cuba``: the abstract Input/Dense/Conv/
Pool/Flatten blocks of ``slayer.block.base`` hold the synapse; this file only binds our
neuron to them and routes ``export_hdf5`` through the quantizer, so that a block's file
entry is exactly what :func:`snn2loihi.quantize.quantize_network` produces.

``neuron_params`` are the keyword arguments of :class:`snn2loihi.neuron.soft_lif.Neuron`
(``threshold``, ``current_decay``, ``voltage_decay``, ``reset``, ``surrogate``, ``scale``,
...). ``reset="hard"`` gives the stock-netx CUBA neuron; slayer's own
``slayer.block.cuba`` blocks are accepted by the quantizer too.

The synapses are slayer's with the time axis folded into the batch
(:mod:`snn2loihi.blocks.synapse`): same parameters and results, 2-D convolutions.

Blocks default to ``delay_shift=False``: Lava's one-step synaptic delay per layer is a
pure time shift, which the emulator and the Lava runner apply, not the trainer.

Example:
    >>> p = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    >>> blocks = [Conv(p, 1, 16, 3, padding=1), Pool(p, 2), Flatten(), Dense(p, 16 * 4 * 4, 10)]
"""
from __future__ import annotations

import torch
from lava.lib.dl.slayer.block import base
from ..neuron.soft_lif import Neuron
from . import synapse


class _ExportViaIR:
    """Mixin: ``export_hdf5`` writes the block's quantized :mod:`snn2loihi.ir` layer."""

    def export_hdf5(self, handle) -> None:
        """Write this block as one netx layer into the h5py group ``handle``."""
        from ..quantize import export_block

        export_block(self, handle)


class _SoftLIF(_ExportViaIR, torch.nn.Module):
    """Mixin: builds our neuron from ``neuron_params`` (as slayer's ``AbstractCuba`` does)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("delay_shift", False)
        super().__init__(*args, **kwargs)
        self.neuron = Neuron(**self.neuron_params) if self.neuron_params is not None else None
        self.delay = None
        del self.neuron_params

    def _bind_synapse(self, synapse_cls, **kwargs) -> None:
        self.synapse = synapse_cls(**self.synapse_params)
        if kwargs.get("pre_hook_fx") is None:
            self.synapse.pre_hook_fx = self.neuron.quantize_8bit
        del self.synapse_params


class Input(_ExportViaIR, base.AbstractInput):
    """Input block; without ``neuron_params`` it only declares the input shape.

    Input spikes enter the next block's synapse. (slayer's input-with-neuron variant,
    which rescales analog input, is not offered: encode on the host instead.)
    """

    def __init__(self, shape: tuple):
        super().__init__(neuron_params=None)
        self.input_shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:-1]) != self.input_shape:
            raise ValueError(f"input shape {tuple(x.shape[1:-1])} differs from the declared {self.input_shape}")
        return x


class Flatten(_ExportViaIR, base.AbstractFlatten):
    """(N, C, H, W, T) → (N, C·H·W, T)."""


class Dense(_SoftLIF, base.AbstractDense):
    """Dense synapse + soft/hard-reset LIF: ``Dense(neuron_params, in_neurons, out_neurons)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bind_synapse(synapse.Dense, **kwargs)


class Conv(_SoftLIF, base.AbstractConv):
    """Conv synapse + LIF: ``Conv(neuron_params, in_features, out_features, kernel_size,
    stride=1, padding=0, dilation=1, groups=1)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bind_synapse(synapse.Conv, **kwargs)


class Pool(_SoftLIF, base.AbstractPool):
    """Average pooling on spikes: sum pool with a fixed weight θ/k² per tap, then LIF.

    With an integrate-and-fire neuron and soft reset this preserves spike rates exactly:
    every k² input spikes in a window give one output spike. ``Pool(neuron_params,
    kernel_size, stride=None, padding=0, dilation=1)``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bind_synapse(synapse.Pool, **kwargs)
        taps = int(self.synapse.kernel_size[0] * self.synapse.kernel_size[1])
        with torch.no_grad():
            self.synapse.weight.fill_(self.neuron.threshold / taps)
        self.synapse.weight.requires_grad_(False)
