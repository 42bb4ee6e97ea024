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
"""
from .convert import BLOCKS, BIAS_MODES, RULES, V_INIT_MODES, ConversionResult, convert, encode
from .errors import ConversionError
from .graph import Graph, extract_graph
from .network import ConvertedNetwork, SkipSynapse
from .report import ConversionReport, LayerError

__all__ = ["convert", "encode", "ConversionResult", "ConversionReport", "LayerError", "ConvertedNetwork",
           "SkipSynapse", "Graph", "extract_graph", "ConversionError", "RULES", "BLOCKS", "BIAS_MODES",
           "V_INIT_MODES"]
