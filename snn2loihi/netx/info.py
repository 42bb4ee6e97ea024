"""The layer table of a network (what ``snn2loihi info`` prints)."""
from __future__ import annotations

from ..ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, PoolLayer, layer_neuron

_TYPES = {InputLayer: "input", DenseLayer: "dense", ConvLayer: "conv", PoolLayer: "pool", FlattenLayer: "flatten"}


def layer_table(net: Network) -> list:
    """One dict per layer: index, type, shape, neuron type and parameters, the steps it may
    fire at (a ``fire_window``, as "first-last"), weight count and range, and for dense
    layers the weight bits/exponent netx hands to Lava's Dense."""
    from ..sim.synapses import dense_weights

    rows = []
    for i, layer in enumerate(net.layers):
        row = {"index": i, "type": _TYPES[type(layer)], "shape": "x".join(map(str, layer.out_shape))}
        if isinstance(layer, ConvLayer):
            row["type"] += f" {layer.kernel[0]}x{layer.kernel[1]}/s{layer.stride[0]}p{layer.padding[0]}"
            if layer.groups > 1:
                row["type"] += f"g{layer.groups}"
        neuron = layer_neuron(layer)
        if neuron is not None:
            readout = isinstance(layer, DenseLayer) and layer.neuron is None
            row.update({"neuron": "readout" if readout else neuron.kind, "iDecay": neuron.i_decay,
                        "vDecay": neuron.v_decay, "vThMant": neuron.vth_mant})
        if getattr(layer, "fire_window", None) is not None:
            row["fires"] = "{}-{}".format(layer.fire_window[0], layer.fire_window[1] - 1)
        weight = getattr(layer, "weight", None)
        if weight is not None:
            row.update({"weights": int(weight.size), "weight_range": f"[{int(weight.min())}, {int(weight.max())}]"})
            if isinstance(layer, DenseLayer):
                dw = dense_weights(weight)
                row.update({"weight_bits": dw.num_weight_bits, "weight_exp": dw.weight_exp})
            else:
                row.update({"weight_bits": 8, "weight_exp": 0})
        rows.append(row)
    return rows
