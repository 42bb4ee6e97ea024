"""Typed, in-memory description of a fixed-point network: the one source of truth.

The netx reader and writer, the Lava loader, the emulator and the accounting all read
this description; none of them parses HDF5 on its own. Every number here is already a
Loihi integer, exactly as it is stored in a netx file:

- weights are integer-valued (the stored 9-bit mantissa grid, even values in [-256, 254]
  for slayer-style exports), shapes in torch order: dense (out, in), conv
  (C_out, C_in / groups, kH, kW), pool (kH, kW);
- neuron decays are 12-bit fractions of 4096, thresholds are mantissas that the
  hardware left-shifts by 6, biases are mantissas with exponent 6;
- layer shapes are (C, H, W) or (F,), as slayer writes them;
- initial voltages ``v_init`` are raw 24-bit v values (the unit of ``vth_mant << 6``);
- a firing window ``fire_window = (first, stop)`` counts steps from the start of each
  sample: the layer's neurons integrate at every step but may spike only at steps
  ``first <= t < stop`` (a converted layer's hold, see ``docs/residual.md``).

Layers normally read the layer before them. A Dense or Conv layer may also carry a
:class:`Skip`: a second synapse group that reads the spikes of a named earlier layer (or of
the layer before, with weights on a coarser grid) and drives the same neuron population
(residual connections, relays). A skip has its own weight exponent ``weight_exp`` (Loihi's
per-synapse-group exponent): its delivered weights are ``weight << weight_exp``. Every
synapse adds one step of delay, so a skip from layer j into layer i delivers j's spikes ``(i - j) - 1`` steps before
while the chain through the synapse layers between them takes one step per synapse layer
(see ``docs/residual.md``).

Validation happens in ``__post_init__`` so that an invalid description can never reach
a backend. Errors are ``ValueError`` with a message that names the field; the netx
reader wraps them with the file and layer they came from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

#: Loihi state registers (u, v) are 24-bit signed.
STATE_BITS = 24
#: 12-bit decays are fractions of 4096.
DECAY_UNITY = 1 << 12
#: Thresholds are 17-bit unsigned mantissas, left-shifted by 6 on the chip. netx's
#: readout neuron uses 2^17 (an effective 2^23, above the clipped v), so it is allowed.
VTH_MAX = 1 << 17
#: Neuron types a netx file may name. ``LOIHI`` is the legacy spelling of ``CUBA``.
HARD_RESET_TYPES = ("CUBA", "LOIHI")
SOFT_RESET_TYPE = "CUBA_SOFT"
NEURON_TYPES = HARD_RESET_TYPES + (SOFT_RESET_TYPE,)


def _check_int_array(name: str, value: np.ndarray, ndim: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf b":
        raise ValueError(f"{name} must be numeric, found dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds NaN or infinite values")
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} must be integer-valued (Loihi integers), found fractions")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, found shape {arr.shape}")
    return arr.astype(np.int64)


def _pair(name: str, value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise ValueError(f"{name} must be one or two integers, found {arr.tolist()}")
    return int(arr[0]), int(arr[1])


@dataclass(frozen=True)
class NeuronSpec:
    """Compartment parameters of a current-based LIF neuron (CUBA) on Loihi.

    Per time step, in integers (Lava's ``PyLifModelBitAcc``)::

        u[t] = sign(u·(4096 - i_decay)) · (|u·(4096 - i_decay)| >> 12) + (a_in[t] << 6)
        v[t] = sign(v·(4096 - v_decay)) · (|v·(4096 - v_decay)| >> 12) + u[t] + (bias << 6)
        s[t] = v[t] > (vth_mant << 6)
        v[t] = 0                      if hard reset (CUBA, LOIHI)
        v[t] = v[t] - (vth_mant << 6) if soft reset (CUBA_SOFT)

    Attributes:
        kind: ``"CUBA"``, ``"LOIHI"`` (hard reset) or ``"CUBA_SOFT"`` (subtractive reset).
        i_decay: current decay, 0..4096 (4096 flushes u every step).
        v_decay: voltage decay, 0..4096 (0 is a non-leaky integrate-and-fire).
        vth_mant: threshold mantissa, 0..131071; the effective threshold is vth_mant << 6.
        ref_delay: refractory delay; Lava's LIF has none, so only 1 is accepted.
        graded_spike: graded (multi-bit) output spikes; not supported by this toolkit.
    """

    kind: str
    i_decay: int
    v_decay: int
    vth_mant: int
    ref_delay: int = 1
    graded_spike: bool = False

    def __post_init__(self) -> None:
        if self.kind not in NEURON_TYPES:
            raise ValueError(f"unknown neuron type {self.kind!r} (known: {', '.join(NEURON_TYPES)})")
        for name in ("i_decay", "v_decay"):
            value = getattr(self, name)
            if not 0 <= value <= DECAY_UNITY:
                raise ValueError(f"neuron {name} = {value} is outside the 12-bit range 0..4096")
        if not 0 <= self.vth_mant <= VTH_MAX:
            raise ValueError(f"neuron vThMant = {self.vth_mant} is outside 0..{VTH_MAX}")
        if self.ref_delay != 1:
            raise ValueError(
                f"neuron refDelay = {self.ref_delay} is not supported: Lava's LIF has no refractory period")
        if self.graded_spike:
            raise ValueError("graded spikes (gradedSpike = True) are not supported")

    @property
    def soft_reset(self) -> bool:
        """True when a spike subtracts the threshold instead of zeroing v."""
        return self.kind == SOFT_RESET_TYPE


@dataclass
class Skip:
    """A second synapse group into a layer's neurons, reading the spikes of an earlier layer.

    The layer's neurons receive ``a = W·s_prev + (W_skip·s_source << weight_exp)`` (Lava
    sums the two synapse outputs at the neuron's ``a_in`` port). Like every synapse the skip
    delivers at step t what its source emitted at t-1.

    The exponent lets one population hold weights of two magnitudes at full 8-bit
    resolution each: a converted layer's large weights (relays and clocks of one
    threshold, shortcuts, stem weights) sit in a skip from the layer before, so that its
    small weights are not forced onto the grid that fits the largest in 8 bits.

    Attributes:
        source: index of an earlier layer that owns neurons (not the input layer unless it
            has a neuron, never a flatten layer); the skip reads its output spikes.
        weight: dense (out, in) with ``in`` = the source's neuron count (a (C, H, W) source is
            read in C order, as after a flatten), or conv (C_out, C_src / groups, kH, kW);
            8-bit mantissas (the grid of the layer's own weights).
        stride, padding, dilation, groups: conv geometry, (y, x) pairs in torch order.
        weight_exp: shared exponent e in [0, 7]: the group delivers ``weight · 2^e``.
    """

    source: int
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weight_exp: int = 0

    def __post_init__(self) -> None:
        self.source = int(self.source)
        self.weight = _check_int_array("skip weight", self.weight)
        if self.weight.ndim not in (2, 4):
            raise ValueError(f"skip weight must be dense (out, in) or conv (C_out, C_in, kH, kW), "
                             f"found shape {self.weight.shape}")
        self.stride = _pair("skip stride", self.stride)
        self.padding = _pair("skip padding", self.padding)
        self.dilation = _pair("skip dilation", self.dilation)
        self.groups = int(self.groups)
        self.weight_exp = _weight_exp(self.weight_exp)
        if self.is_dense and (self.stride, self.padding, self.dilation, self.groups) != ((1, 1), (0, 0), (1, 1), 1):
            raise ValueError("a dense skip has no stride, padding, dilation or groups")

    @property
    def is_dense(self) -> bool:
        return self.weight.ndim == 2

    @property
    def kernel(self) -> tuple[int, int]:
        """(kH, kW) of a conv skip."""
        return int(self.weight.shape[-2]), int(self.weight.shape[-1])

    def synapse(self, in_shape: tuple, neuron: "NeuronSpec") -> Union["DenseLayer", "ConvLayer"]:
        """The skip's synapse as a layer reading ``in_shape`` (validated), for the backends'
        synapse code; ``neuron`` is the target layer's (the synapse ignores it)."""
        if self.is_dense:
            if int(np.prod(in_shape)) != self.weight.shape[1]:
                raise ValueError(f"dense skip weight {self.weight.shape} does not fit a source of shape "
                                 f"{tuple(in_shape)}")
            return DenseLayer(self.weight, neuron, weight_exp=self.weight_exp)
        if len(in_shape) != 3:
            raise ValueError(f"a conv skip needs a (C, H, W) source, found shape {tuple(in_shape)}")
        return ConvLayer(in_shape, self.weight, neuron, stride=self.stride, padding=self.padding,
                         dilation=self.dilation, groups=self.groups, weight_exp=self.weight_exp)


#: What netx builds for a dense layer stored without a ``neuron`` group: a non-leaky
#: current integrator whose threshold is never reached (a readout).
READOUT_NEURON = NeuronSpec(kind="CUBA", i_decay=0, v_decay=DECAY_UNITY, vth_mant=1 << 17)


@dataclass
class InputLayer:
    """Network input. Without a neuron, binary spikes enter the next layer's synapse.

    With a neuron, the input port drives the neuron's ``a_in`` with integers each step
    (how stock netx input layers work). ``transform_weight``/``transform_bias`` are the
    optional scalar input transform stored by slayer; Lava does not apply them.

    Attributes:
        shape: (C, H, W) or (F,).
    """

    shape: tuple[int, ...]
    neuron: Optional[NeuronSpec] = None
    transform_weight: int = 64
    transform_bias: int = 0

    def __post_init__(self) -> None:
        self.shape = _shape("input shape", self.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape


@dataclass
class DenseLayer:
    """Fully connected synapses ``a = W · s`` followed by a neuron population.

    Attributes:
        weight: (out, in) integers as stored in the file.
        bias: (out,) bias mantissas (exponent 6) or None.
        neuron: neuron parameters; None for a readout layer (see ``READOUT_NEURON``).
        skip: optional second synapse group from an earlier layer (soft-reset neurons only).
        v_init: (out,) initial v of every sample (raw 24-bit units) or None for rest (0);
            soft-reset neurons only.
        weight_exp: the synapse group's exponent (the layer delivers ``W·s << weight_exp``);
            netx stores one only for a skip, so a network's own layers keep 0.
        fire_window: (first, stop) steps of each sample in which the neurons may spike, or
            None for every step; soft-reset neurons only.
    """

    weight: np.ndarray
    neuron: Optional[NeuronSpec]
    bias: Optional[np.ndarray] = None
    skip: Optional[Skip] = None
    v_init: Optional[np.ndarray] = None
    weight_exp: int = 0
    fire_window: Optional[tuple[int, int]] = None

    def __post_init__(self) -> None:
        self.weight = _check_int_array("dense weight", self.weight, ndim=2)
        self.weight_exp = _weight_exp(self.weight_exp)
        if self.bias is not None:
            self.bias = _bias("dense bias", self.bias, self.weight.shape[0])
        _check_extensions(self, self.weight.shape[0])

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[1],)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[0],)


@dataclass
class ConvLayer:
    """2-D convolution synapses followed by a neuron population.

    Attributes:
        in_shape: (C_in, H, W) of the incoming spikes.
        weight: (C_out, C_in / groups, kH, kW) integers.
        stride, padding, dilation: (y, x) pairs in torch order.
        skip, v_init, weight_exp, fire_window: as for :class:`DenseLayer` (v_init per
            output channel).
    """

    in_shape: tuple[int, ...]
    weight: np.ndarray
    neuron: NeuronSpec
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: Optional[np.ndarray] = None
    skip: Optional[Skip] = None
    v_init: Optional[np.ndarray] = None
    weight_exp: int = 0
    fire_window: Optional[tuple[int, int]] = None

    def __post_init__(self) -> None:
        self.in_shape = _shape("conv input shape", self.in_shape, ndim=3)
        self.weight = _check_int_array("conv weight", self.weight, ndim=4)
        self.weight_exp = _weight_exp(self.weight_exp)
        _set_geometry(self, "conv")
        self.groups = int(self.groups)
        c_out, c_in_g = self.weight.shape[:2]
        if self.groups < 1 or self.in_shape[0] != c_in_g * self.groups or c_out % self.groups:
            raise ValueError(f"conv weight {self.weight.shape} with groups={self.groups} does not fit "
                             f"{self.in_shape[0]} input channels")
        if min(self.out_shape) < 1:
            raise ValueError(f"conv output shape {self.out_shape} is empty for input {self.in_shape}")
        _shape("conv output shape", self.out_shape)  # huge padding must not pass as a network
        if self.bias is not None:
            self.bias = _bias("conv bias", self.bias, c_out)
        _check_extensions(self, c_out)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (int(self.weight.shape[0]),) + _conv_hw(self.in_shape[1:], self.kernel, self.stride,
                                                      self.padding, self.dilation)


@dataclass
class PoolLayer:
    """Sum pooling with an integer weight per kernel tap (slayer's ``pool`` block).

    Each channel is pooled on its own: ``a[c] = Σ_k weight[k] · s[c, window(k)]``, then a
    neuron population. Average pooling is this with equal weights and a threshold that
    matches the window size.

    Attributes:
        in_shape: (C, H, W).
        weight: (kH, kW) integers.
        v_init: (C,) initial v per channel (raw units) or None; soft-reset neurons only.
        fire_window: as for :class:`DenseLayer`.
    """

    in_shape: tuple[int, ...]
    weight: np.ndarray
    neuron: NeuronSpec
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    v_init: Optional[np.ndarray] = None
    fire_window: Optional[tuple[int, int]] = None

    def __post_init__(self) -> None:
        self.in_shape = _shape("pool input shape", self.in_shape, ndim=3)
        self.weight = _check_int_array("pool weight", self.weight, ndim=2)
        _set_geometry(self, "pool")
        if min(self.out_shape) < 1:
            raise ValueError(f"pool output shape {self.out_shape} is empty for input {self.in_shape}")
        _shape("pool output shape", self.out_shape)  # huge padding must not pass as a network
        _check_extensions(self, self.in_shape[0])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[0]), int(self.weight.shape[1])

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.in_shape[0],) + _conv_hw(self.in_shape[1:], self.kernel, self.stride,
                                              self.padding, self.dilation)


@dataclass
class FlattenLayer:
    """Reshapes (C, H, W) to (C·H·W,) in C order, as netx's ``transpose([2,1,0]).flatten()``."""

    in_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        self.in_shape = _shape("flatten input shape", self.in_shape)

    @property
    def out_shape(self) -> tuple[int]:
        return (int(np.prod(self.in_shape)),)


Layer = Union[InputLayer, DenseLayer, ConvLayer, PoolLayer, FlattenLayer]
#: Layers with synapses and a neuron population (each adds one time step of latency).
SynapticLayer = Union[DenseLayer, ConvLayer, PoolLayer]


@dataclass
class Network:
    """An ordered feed-forward network; ``layers[0]`` is always an ``InputLayer``.

    Shapes are checked between consecutive layers on construction, so a ``Network``
    that exists is one every backend can run.
    """

    layers: list
    source: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[0], InputLayer):
            raise ValueError("the first layer must be an input layer")
        if len(self.layers) < 2:
            raise ValueError("the network has no layer after the input")
        shape = self.layers[0].out_shape
        for i, layer in enumerate(self.layers[1:], start=1):
            if isinstance(layer, InputLayer):
                raise ValueError(f"layer {i}: an input layer can only come first")
            expected = layer.in_shape
            if isinstance(layer, DenseLayer):
                ok = int(np.prod(shape)) == expected[0] and (len(shape) == 1 or
                                                             isinstance(self.layers[i - 1], FlattenLayer))
            else:
                ok = tuple(shape) == tuple(expected)
            if not ok:
                raise ValueError(f"layer {i} ({type(layer).__name__}) expects input {expected}, "
                                 f"but layer {i - 1} produces {tuple(shape)}")
            if getattr(layer, "weight_exp", 0):
                raise ValueError(f"layer {i}: a weight exponent is stored only for a skip, found weight_exp "
                                 f"{layer.weight_exp} on the layer's own synapses")
            if getattr(layer, "skip", None) is not None:
                self._check_skip(i, layer)
            shape = layer.out_shape
        if isinstance(self.layers[-1], FlattenLayer):
            raise ValueError("the network cannot end with a flatten layer")

    def _check_skip(self, i: int, layer) -> None:
        src = layer.skip.source
        if not 0 <= src < i:
            raise ValueError(f"layer {i}: skip source {src} is not an earlier layer")
        source = self.layers[src]
        if isinstance(source, FlattenLayer) or (isinstance(source, InputLayer) and source.neuron is None):
            raise ValueError(f"layer {i}: skip source {src} ({type(source).__name__}) owns no neurons")
        synapse = layer.skip.synapse(source.out_shape, layer.neuron)
        if tuple(synapse.out_shape) != tuple(layer.out_shape):
            raise ValueError(f"layer {i}: skip from layer {src} produces {tuple(synapse.out_shape)}, "
                             f"the layer has {tuple(layer.out_shape)} neurons")

    def skip_synapse(self, i: int) -> Union["DenseLayer", "ConvLayer"]:
        """The skip of layer ``i`` as a synapse layer reading its source's output shape."""
        layer = self.layers[i]
        return layer.skip.synapse(self.layers[layer.skip.source].out_shape, layer.neuron)

    @property
    def input(self) -> InputLayer:
        return self.layers[0]

    @property
    def synaptic_layers(self) -> list:
        """Layers with synapses, in order (dense, conv, pool)."""
        return [layer for layer in self.layers if isinstance(layer, (DenseLayer, ConvLayer, PoolLayer))]

    @property
    def neuron_layers(self) -> list:
        """(index, layer) of every layer that owns a neuron population, in order."""
        return [(i, layer) for i, layer in enumerate(self.layers)
                if not isinstance(layer, FlattenLayer)
                and not (isinstance(layer, InputLayer) and layer.neuron is None)]

    @property
    def latency(self) -> int:
        """Time steps from an input to the last layer's response: one per synapse layer
        (skips only add shorter paths, so the chain through every layer is the longest),
        and no earlier than the opening of a layer's ``fire_window``."""
        steps = 0
        for layer in self.synaptic_layers:
            steps = max(steps + 1, (getattr(layer, "fire_window", None) or (0,))[0])
        return steps

    def padding(self, timesteps: int) -> int:
        """Silent steps to append to an input of ``timesteps`` steps so that a run sees the
        whole response: the latency, or more where a layer's ``fire_window`` closes later
        (a converted network's readout window, longer than T)."""
        stop = max((layer.fire_window[1] for layer in self.synaptic_layers
                    if getattr(layer, "fire_window", None) is not None), default=0)
        return max(self.latency, stop - int(timesteps))

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape


def layer_neuron(layer: Layer) -> Optional[NeuronSpec]:
    """The neuron that a backend instantiates for ``layer`` (readout default included)."""
    if isinstance(layer, FlattenLayer):
        return None
    if isinstance(layer, DenseLayer) and layer.neuron is None:
        return READOUT_NEURON
    return layer.neuron


def _shape(name: str, shape, ndim: Optional[int] = None) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(shape)).ravel()
    if arr.dtype.kind not in "iuf" or not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{name} must be a list of integers, found {arr.tolist()}")
    out = tuple(int(s) for s in arr)
    if not out or min(out) < 1 or max(out) > 1 << 26 or math.prod(out) > 1 << 26:
        raise ValueError(f"{name} {out} must be positive and at most 2^26 neurons")
    if ndim is not None and len(out) != ndim:
        raise ValueError(f"{name} must have {ndim} entries (C, H, W), found {out}")
    return out


def _bias(name: str, bias, n: int) -> np.ndarray:
    arr = _check_int_array(name, np.atleast_1d(np.asarray(bias)).ravel())
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise ValueError(f"{name} has {arr.size} values for {n} channels/neurons")
    if np.abs(arr).max(initial=0) > 4095:
        raise ValueError(f"{name} mantissa must be within the 13-bit range -4096..4095")
    return arr


#: Largest skip weight exponent (Loihi's synapse groups take -8 … 7; only e ≥ 0 is exact).
WEIGHT_EXP_MAX = 7


def _weight_exp(value) -> int:
    exp = int(value)
    if not 0 <= exp <= WEIGHT_EXP_MAX:
        raise ValueError(f"weight_exp must be an integer in [0, {WEIGHT_EXP_MAX}], found {value}")
    return exp


def _fire_window(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).ravel()
    if arr.size != 2 or arr.dtype.kind not in "iuf" or not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"fire_window must be two integers (first, stop), found {np.asarray(value).tolist()}")
    first, stop = int(arr[0]), int(arr[1])
    if not 0 <= first < stop:
        raise ValueError(f"fire_window must satisfy 0 <= first < stop, found ({first}, {stop})")
    return first, stop


#: Layer fields that extend the soft-reset neuron (CUBA_SOFT only; stock netx cannot express them).
SOFT_EXTENSIONS = ("skip", "v_init", "fire_window")


def _check_extensions(layer, channels: int) -> None:
    """Validate a layer's optional ``v_init``, ``skip`` and ``fire_window``
    (``SOFT_EXTENSIONS``: CUBA_SOFT, which stock netx refuses rather than misread)."""
    skip = getattr(layer, "skip", None)
    if all(getattr(layer, name, None) is None for name in SOFT_EXTENSIONS):
        return
    if layer.neuron is None or not layer.neuron.soft_reset:
        raise ValueError("v_init, skip and fire_window need soft-reset (CUBA_SOFT) neurons: stock netx would "
                         "silently drop them from a CUBA layer")
    if layer.fire_window is not None:
        layer.fire_window = _fire_window(layer.fire_window)
    if skip is not None and not isinstance(skip, Skip):
        raise ValueError(f"skip must be a Skip, found {type(skip).__name__}")
    if layer.v_init is not None:
        arr = _check_int_array("v_init", np.atleast_1d(np.asarray(layer.v_init)).ravel())
        if arr.size == 1:
            arr = np.repeat(arr, channels)
        if arr.size != channels:
            raise ValueError(f"v_init has {arr.size} values for {channels} channels/neurons")
        if np.abs(arr).max(initial=0) >= 1 << (STATE_BITS - 1):
            raise ValueError("v_init must lie within the 24-bit range ±(2^23 - 1)")
        layer.v_init = arr


def _set_geometry(layer, kind: str) -> None:
    """Normalize ``layer``'s stride/padding/dilation to (y, x) pairs and check their ranges."""
    layer.stride = _pair(f"{kind} stride", layer.stride)
    layer.padding = _pair(f"{kind} padding", layer.padding)
    layer.dilation = _pair(f"{kind} dilation", layer.dilation)
    if min(layer.stride) < 1 or min(layer.dilation) < 1 or min(layer.padding) < 0:
        raise ValueError(f"{kind} stride/dilation must be >= 1 and padding >= 0, found "
                         f"{layer.stride}/{layer.dilation}/{layer.padding}")


def _conv_hw(hw, kernel, stride, padding, dilation) -> tuple[int, int]:
    return tuple(int((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1)
                 for i in range(2))
