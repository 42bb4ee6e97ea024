"""ANN → SNN conversion: threshold balancing, threshold tuning and residual-block restructuring.

Public API (stable)::

    from snn2loihi.conversion import convert, ConversionResult, RULES, BLOCKS

    result = convert(ann, calib_x, timesteps=16, rule="tuned", block="restructured")
    x = result.encode(images)                 # (N, C, H, W, T + latency) spikes
    counts = result.snn(x).sum(-1)            # (N, classes) output spike counts
    net, qreport = result.export()            # snn2loihi.ir.Network (quantize_network)
    print(result.report.table())              # per-layer error: quantization / deviation / ...

See :func:`convert` for the conventions, ``docs/residual.md`` for the residual blocks on
the device and shared/research/algorithms.md §4 for the error analysis this follows.

Importing the package is light (PEP 562 lazy attributes): :mod:`~.activation`, the ANN-side
clip-floor-shift layer, loads without importing slayer or Lava, so ANN training scripts
(``models/ann.py``, ``bench/train_ann.py``) use it on any torch machine.
"""
from __future__ import annotations

import importlib

_WHERE = {"convert": "converter", "encode": "converter", "ConversionResult": "converter", "RULES": "converter",
          "BLOCKS": "converter", "BIAS_MODES": "converter", "V_INIT_MODES": "converter", "ConversionError": "errors",
          "Graph": "graph", "extract_graph": "graph", "ConvertedNetwork": "network", "SkipSynapse": "network",
          "ConversionReport": "report", "LayerError": "report", "ClipFloorShift": "activation"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
