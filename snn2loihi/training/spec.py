"""Architectures as plain data: describe a model as dicts and lists, and rebuild it.

A checkpoint stores this description next to the ``state_dict``, so it can be rebuilt
without the code (or the calibration data) that first made the model, and loaded with
``torch.load(..., weights_only=True)``. The same dictionaries are what recipes write for
neurons, e.g. ``{"threshold": 1.0, "voltage_decay": 0.5, "reset": "hard",
"surrogate": {"name": "Triangle", "gamma": 1.0}, "dropout": {"p": 0.2, "per_step": false}}``.

Block descriptions: ``{"type": "Conv" | "Dense" | "Pool" | "Flatten" | "Readout" |
"BatchNormConv" | "BatchNormDense" | "NeuNorm" | "Residual", ...geometry, "neuron": {...}}``;
Conv and Dense blocks with frozen weights carry ``"trainable": false``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from lava.lib.dl.slayer.neuron.dropout import Dropout as TimeDropout

from ..blocks.network import SpikingNetwork
from ..blocks.soft_lif import Conv, Dense, Flatten, Pool
from ..ir import DECAY_UNITY
from ..neuron import surrogate as surrogates

SURROGATES = {cls.__name__: cls for cls in (surrogates.Exponential, surrogates.Rectangular, surrogates.Triangle,
                                            surrogates.STDB)}


def surrogate_spec(surrogate) -> dict:
    """``{"name": class name, **fields}`` of a dataclass surrogate."""
    return {"name": type(surrogate).__name__, **dataclasses.asdict(surrogate)}


def make_surrogate(spec: dict):
    """A surrogate object from its description."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r} (known: {', '.join(SURROGATES)})")
    return SURROGATES[name](**spec)


def neuron_spec(neuron) -> dict:
    """Plain description of a :class:`~snn2loihi.neuron.soft_lif.Neuron`."""
    drop = neuron.drop
    v_init = getattr(neuron, "v_init", None)
    return {"threshold": float(neuron.threshold),
            "current_decay": float(neuron.current_decay.detach().reshape(-1)[0]) / DECAY_UNITY,
            "voltage_decay": float(neuron.voltage_decay.detach().reshape(-1)[0]) / DECAY_UNITY,
            "reset": neuron.reset, "surrogate": surrogate_spec(neuron.surrogate), "scale": int(neuron.w_scale),
            "fixed_point": bool(neuron.fixed_point), "requires_grad": bool(neuron.current_decay.requires_grad),
            "detach_reset": bool(neuron.detach_reset),
            "dropout": None if drop is None else {"p": float(drop.p), "per_step": not isinstance(drop, TimeDropout)},
            "v_init": None if v_init is None else v_init.detach().cpu().tolist()}


def neuron_kwargs(spec: dict) -> dict:
    """Keyword arguments of ``Neuron`` from a plain description (surrogate and dropout built).

    ``dropout``: ``{"p": p, "per_step": False}`` keeps one mask for all time steps (Rathi;
    slayer's Dropout), ``per_step: True`` draws a new mask every step (STBP's code).
    """
    kwargs = dict(spec)
    kwargs.pop("v_init", None)  # a buffer, set after construction (see _with_state)
    if isinstance(kwargs.get("surrogate"), dict):
        kwargs["surrogate"] = make_surrogate(kwargs["surrogate"])
    drop = kwargs.pop("dropout", None)
    if drop:
        kwargs["dropout"] = torch.nn.Dropout(drop["p"]) if drop.get("per_step") else TimeDropout(drop["p"])
    return kwargs


def _geometry(syn) -> dict:
    return {"kernel": list(syn.kernel_size[:2]), "stride": list(syn.stride[:2]), "padding": list(syn.padding[:2]),
            "dilation": list(syn.dilation[:2])}


def block_spec(block) -> dict:
    """Plain description of one block (see the module docstring)."""
    from .modules import BatchNormConv, BatchNormDense, Readout

    if hasattr(block, "spec"):
        return block.spec()
    if isinstance(block, Flatten):
        return {"type": "Flatten"}
    if isinstance(block, Readout):
        return {"type": "Readout", "in": int(block.synapse.in_channels), "out": int(block.synapse.out_channels),
                "scale": int(block.neuron.w_scale)}
    if getattr(block, "skip", None) is not None:
        raise ValueError("blocks with skip synapses (converted residual networks) cannot be described")
    syn = block.synapse
    spec: dict[str, Any] = {"neuron": neuron_spec(block.neuron), "bias": getattr(syn, "bias", None) is not None}
    if isinstance(block, Pool):
        return {"type": "Pool", **spec, **_geometry(syn)}
    if isinstance(block, (Conv, Dense)):
        spec.update({"in": int(syn.in_channels), "out": int(syn.out_channels)})
        if not syn.weight.requires_grad:
            spec["trainable"] = False
        if isinstance(block, Conv):
            spec.update(_geometry(syn), groups=int(syn.groups))
        spec["type"] = type(block).__name__ if isinstance(block, (BatchNormConv, BatchNormDense)) else (
            "Conv" if isinstance(block, Conv) else "Dense")
        if isinstance(block, (BatchNormConv, BatchNormDense)):
            spec.update(eps=float(block.norm.eps), momentum=float(block.norm.momentum))
        return spec
    raise ValueError(f"cannot describe block {type(block).__name__}")


def _conv_args(spec: dict) -> tuple[list, dict]:
    return ([neuron_kwargs(spec["neuron"]), spec["in"], spec["out"], spec["kernel"]],
            {"stride": spec["stride"], "padding": spec["padding"], "dilation": spec["dilation"],
             "groups": spec["groups"]})


def _builders() -> dict[str, Callable[[dict], torch.nn.Module]]:
    from .modules import BatchNormConv, BatchNormDense, Readout
    from .residual import Residual
    from .stbp import NeuNorm

    def conv(cls):
        return lambda s: cls(*_conv_args(s)[0], **_conv_args(s)[1], **_norm_args(s))

    def dense(cls):
        return lambda s: cls(neuron_kwargs(s["neuron"]), s["in"], s["out"], **_norm_args(s))

    return {
        "Flatten": lambda s: Flatten(),
        "Conv": conv(Conv), "BatchNormConv": conv(BatchNormConv),
        "Dense": dense(Dense), "BatchNormDense": dense(BatchNormDense),
        "Pool": lambda s: Pool(neuron_kwargs(s["neuron"]), s["kernel"], stride=s["stride"], padding=s["padding"],
                               dilation=s["dilation"]),
        "Readout": lambda s: Readout(s["in"], s["out"], scale=s["scale"]),
        "NeuNorm": NeuNorm.from_spec,
        "Residual": Residual.from_spec,
    }


def _norm_args(spec: dict) -> dict:
    return {k: spec[k] for k in ("eps", "momentum") if k in spec}


def block_from_spec(spec: dict) -> torch.nn.Module:
    """Build one block from its description (weights freshly initialised)."""
    builders = _builders()
    if spec.get("type") not in builders:
        raise ValueError(f"unknown block type {spec.get('type')!r} (known: {', '.join(builders)})")
    return _with_state(builders[spec["type"]](spec), spec)


def _with_state(block: torch.nn.Module, spec: dict) -> torch.nn.Module:
    """Give the block the optional tensors its description names: a synapse bias (a constant
    current per step) and the neuron's initial voltage ``v_init``; ``"trainable": false``
    freezes the synapse weights (e.g. an average pool written as a depthwise conv)."""
    if spec.get("trainable") is False:
        block.synapse.weight.requires_grad_(False)
    if spec.get("bias"):
        block.synapse.bias = torch.nn.Parameter(torch.zeros(block.synapse.out_channels))
    v_init = (spec.get("neuron") or {}).get("v_init")
    if v_init is not None:
        block.neuron.v_init = torch.tensor(v_init, dtype=torch.float32)
    return block


def network_spec(network: SpikingNetwork) -> dict:
    """``{"input_shape": [...], "blocks": [...]}`` of a :class:`SpikingNetwork`."""
    return {"input_shape": list(network.input_shape), "blocks": [block_spec(b) for b in network.blocks[1:]]}


def network_from_spec(spec: dict) -> SpikingNetwork:
    """Rebuild a :class:`SpikingNetwork` (load its ``state_dict`` afterwards)."""
    return SpikingNetwork(spec["input_shape"], [block_from_spec(b) for b in spec["blocks"]])
