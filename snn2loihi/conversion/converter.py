"""``convert``: a trained ANN → a soft-reset IF spiking network for Loihi, layer by layer."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..blocks.soft_lif import Flatten
from ..data.encoding import pad_time, rate_encode
from . import residual
from .clock import add_bias, clocked, has_bias
from .build import (HEADROOM, choose_scale, layer_spec, locate, make_block, make_skip, neuron_state, plan,
                    with_coarse_group)
from .errors import ConversionError
from .graph import Graph, extract_graph
from .network import ConvertedNetwork, device_padding, fire_start, held_counts, held_steps, neuron_input, window
from .report import ConversionReport, ErrorAccumulator
from .thresholds import RULES, base_threshold, trained_clip

#: Residual block layouts (see :mod:`snn2loihi.conversion.residual`).
BLOCKS = {"standard": residual.standard, "restructured": residual.restructured}
#: How BN-folded biases reach the neurons (see :mod:`snn2loihi.conversion.build`).
BIAS_MODES = ("clock", "timed", "current")
#: Initial membrane voltage u0 as a fraction of the threshold.
V_INIT_MODES = {"half": 0.5, "zero": 0.0}


def encode(images, timesteps: int, u0: float = 0.5, pad: int = 0) -> np.ndarray:
    """Rate-code images (N, *shape) with pixels in [0, 1] into spikes (N, *shape, T + pad).

    Each pixel x gives ``floor(T·x + u0)`` evenly spaced spikes (``u0 = 1/2``: T·x rounded;
    ``u0 = 0``: floored), the count an IF input neuron starting at u0 would fire;
    ``pad`` silent steps follow (the network latency, to see the whole response).
    """
    x = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ConversionError(f"inputs must be images with values in [0, 1], found [{x.min():.3g}, {x.max():.3g}]")
    spikes = rate_encode(np.clip(x + u0 / timesteps, 0.0, 1.0), timesteps)
    return pad_time(spikes, pad) if pad else spikes


@dataclass
class ConversionResult:
    """What :func:`convert` returns.

    Attributes:
        snn: the spiking network (fixed-point arithmetic on; ``snn.set_fixed_point(False)``
            for unquantized weights). Its forward takes ``encode(images, T, pad=latency)``
            (``timing="device"``) or, for a chain with timed biases (``.timing``),
            ``encode(images, T)`` with ``timing="aligned"`` (much faster, same spikes in
            every window).
        thresholds: node name → θ (ANN activation units) of every node but the input.
        scales: node name → the factor c of the threshold rule (θ = c·base).
        report: per-node error at T on the calibration batch (:class:`ConversionReport`).
        graph: the converted graph (after block restructuring, clocks and, with ``correct``, the
            corrected biases).
        timesteps, rule, block, v_init, bias: the options used.
    """

    snn: ConvertedNetwork
    thresholds: dict
    scales: dict
    report: ConversionReport
    graph: Graph
    timesteps: int
    rule: str
    block: str
    v_init: str
    bias: str

    @property
    def latency(self) -> int:
        return self.snn.latency

    @property
    def timing(self) -> str:
        """The fastest exact simulation timing: aligned for chains with timed biases."""
        return self.report.timing

    @property
    def readout(self) -> int:
        """R, the output layer's firing window (T unless converted with a longer one)."""
        return self.snn.readout

    def encode(self, images, pad: Optional[bool] = None) -> np.ndarray:
        """Input spikes for ``images``; padded for device timing by the latency plus any
        readout beyond T (``snn.padding``; by default when ``.timing`` is device, or with
        ``pad=True``)."""
        pad = self.timing == "device" if pad is None else pad
        return encode(images, self.timesteps, V_INIT_MODES[self.v_init], self.snn.padding if pad else 0)

    @torch.no_grad()
    def counts(self, images, fixed_point: bool = True, batch_size: int = 64,
               dtype: torch.dtype = torch.float32, collapse: bool = True) -> np.ndarray:
        """Output spike counts (N, classes) of the torch network.

        In fixed point (float32 holds the chip's integers exactly here) the counts equal
        the emulator's; in float the weights are unquantized. With ``collapse`` a network
        whose hold covers its window (``snn.collapsible``) runs on spike counts
        (:meth:`ConvertedNetwork.count_forward`: the same counts, T times less work); a
        batch where a 24-bit clip cannot be ruled out runs step by step.
        """
        self.snn.set_fixed_point(fixed_point)
        snn = self.snn.to(dtype)
        try:
            out = []
            for start in range(0, len(images), batch_size):
                x = torch.as_tensor(self.encode(images[start:start + batch_size]), dtype=dtype)
                counts = snn.count_forward(x.sum(-1)) if collapse and snn.collapsible else None
                out.append((snn(x, timing=self.timing).sum(-1) if counts is None else counts).cpu().numpy())
            return np.concatenate(out).astype(np.int64)
        finally:
            self.snn.to(torch.float32)
            self.snn.set_fixed_point(True)

    def export(self):
        """``quantize_network(snn)``: (:class:`snn2loihi.ir.Network`, quantization report)."""
        from ..quantize import quantize_network

        self.snn.set_fixed_point(True)
        return quantize_network(self.snn)


def convert(ann: torch.nn.Module, calib_x: torch.Tensor, timesteps: int, rule: str = "max",
            percentile: float = 99.9, block: str = "standard", v_init: str = "half", bias: str = "clock",
            batch_size: int = 32, progress: bool = False, correct: bool = False,
            fixed_point: bool = True, split_weights: bool = True, hold: int = 0,
            readout: Optional[int] = None, headroom: float = HEADROOM) -> ConversionResult:
    """Convert a trained ANN into a soft-reset integrate-and-fire SNN for a window of T steps.

    The ANN is read into a graph of rectified nodes fed by batch-norm-folded conv/dense
    operators (:mod:`snn2loihi.conversion.graph`: ``nn.Sequential`` of Conv2d, Linear,
    BatchNorm, ReLU, AvgPool, Flatten and residual basic blocks; checked against the ANN's
    own output). Every node becomes a layer of IF neurons (threshold θ, soft reset, no leak)
    whose firing rate × θ approximates the node's activation: ``r ≈ clip(a, 0, θ)``. Layers
    are converted one at a time from the input: each node's threshold is chosen by ``rule``
    from its ANN activations on ``calib_x`` and, for ``tuned``, by simulating the new layer
    at T on the calibration batch behind the layers already converted and keeping the scale
    with the smallest error. The same pass measures each layer's error split into
    quantization, deviation, inherited and clipping parts (:mod:`~.report`).

    The ANN must take images with values in [0, 1] (fold any input normalisation into the
    first layer); they enter the SNN rate-coded (:func:`encode`). The output layer is IF
    neurons too: the class with the most output spikes wins.

    Args:
        ann: trained ``torch.nn.Sequential`` (eval-mode BN statistics are folded).
        calib_x: calibration images (N, C, H, W) or (N, F), values in [0, 1]; a few hundred
            training images are plenty.
        timesteps: T, the number of input steps the SNN is built for (tuning, ``v_init``
            and the timed bias depend on it).
        rule: ``"max"``, ``"percentile"``, ``"clip"`` (the ANN's trained clip-floor-shift λ) or
            ``"tuned"`` (:mod:`~.thresholds`).
        percentile: p of the percentile rules.
        block: ``"standard"`` (post-addition neuron, shortcut as a skip synapse) or
            ``"restructured"`` (relayed shortcut, matched latency) (:mod:`~.residual`).
        v_init: ``"half"`` (u0 = θ/2: rounding) or ``"zero"`` (u0 = 0: flooring) initial voltage.
        bias: ``"clock"`` (biases of layers ≥ 2 as weights from a clock channel of the layer
            before: exact at any depth, :mod:`~.clock`), ``"timed"`` or ``"current"``
            (bias currents, :mod:`~.build`).
        batch_size: calibration samples simulated together.
        progress: show a progress bar over layers.
        correct: bias correction (Li et al., ICML 2021): after choosing its thresholds,
            each layer is simulated on the calibration batch behind the already corrected
            layers, and every channel's bias gets ``-θ·ē_c`` per step, ē_c its mean error
            ``E[N/T - min(a/θ, 1)]`` (units of θ; clipping cannot be corrected). With clock
            biases the correction rides on the clock tap, so it is exactly timed at any
            depth. Only nodes with a bias are corrected (not relays, clocks, pools, or a
            bias-free ANN). One extra simulation per layer; ``.graph`` then holds the
            corrected biases.
        fixed_point: run the layer-by-layer pass (tuning, bias correction, the spikes the
            next layer is calibrated on) with the chip's arithmetic, so that its choices see
            the 8-bit weights that will run (True), or with unquantized weights (False: the
            report then holds the conversion error proper).
        split_weights: let layers from 2 on without a residual skip split their weights into
            a fine and a coarse synapse group (a skip from the previous layer with a weight
            exponent, :mod:`~.build`) where that rounds finer (True), or keep one group per
            layer (False: a plain chain that slayer-style training, e.g. STDB, can take).
        hold: h ≥ 0, steps every layer integrates before it may fire (a firing window per
            layer, exported to the chip): spikes are decided on more of the input, which
            removes most of the deviation error of deep networks (all of it for h ≥ T) at
            a latency of (h + 1) steps per layer (:mod:`~.network`). The thresholds and
            bias corrections are chosen with the hold in place. With h ≥ T the rules
            built on the trained clip (``clip``, ``tuned``) keep clip-floor-shift nodes of
            L ≤ T levels at θ = λ (no search), and those of L = T with their biases
            uncorrected: they are lossless there.
        readout: R ≥ T, the output layer's firing window (default T; R > T needs
            ``hold >= timesteps``). The output neurons get a threshold R/T times below θ
            and read their held charge out over R steps, so that the class scores
            ``θ·N/T`` come in steps of θ/R instead of θ/T: fewer tied classes at small T,
            for R - T more steps of latency and up to R/T times the output spikes. Every
            other layer is unchanged (:class:`~.network.ConvertedNetwork`).
        headroom: with a hold, the membrane range each layer keeps free of the 24-bit
            clip, in units of (window + max Σ|W|) thresholds (:func:`~.build.choose_scale`).
            Less headroom buys finer weights (a larger scale) at the risk of clipping a
            partial sum that later falls back; every backend clips alike, so it changes
            accuracy, never agreement.

    Returns:
        :class:`ConversionResult` with ``.snn``, ``.thresholds``, ``.scales`` and ``.report``.

    Raises:
        ConversionError: unsupported ANN, bad option or input range.

    Example:
        >>> result = convert(ann, x_train[:256], timesteps=32, rule="tuned", block="restructured")
        >>> accuracy = (result.counts(x_test).argmax(1) == y_test).mean()
    """
    rule_obj = RULES.get(rule)
    if rule_obj is None or block not in BLOCKS or bias not in BIAS_MODES or v_init not in V_INIT_MODES:
        raise ConversionError(f"unknown option: rule={rule!r} (one of {sorted(RULES)}), block={block!r} "
                              f"({sorted(BLOCKS)}), bias={bias!r} ({BIAS_MODES}), v_init={v_init!r} "
                              f"({sorted(V_INIT_MODES)})")
    if timesteps < 1 or not 0 < percentile <= 100 or hold < 0 or not headroom > 0:
        raise ConversionError(f"timesteps must be >= 1, 0 < percentile <= 100, hold >= 0 and headroom > 0 (got "
                              f"{timesteps}, {percentile}, {hold}, {headroom})")
    readout = timesteps if readout is None else int(readout)
    if readout != timesteps and (readout < timesteps or hold < timesteps):
        raise ConversionError(f"readout={readout} needs readout >= timesteps ({timesteps}) and hold >= timesteps "
                              f"(got hold={hold}): the output must hold all of its charge when its window opens")
    x = torch.as_tensor(np.asarray(calib_x.detach().cpu() if isinstance(calib_x, torch.Tensor) else calib_x),
                        dtype=torch.float32)
    if x.dim() < 2 or len(x) == 0:
        raise ConversionError(f"calib_x must be a batch (N, ...) of inputs, found shape {tuple(x.shape)}")
    graph = BLOCKS[block](extract_graph(ann, tuple(x.shape[1:]), check_x=x[:32]))
    if bias == "clock":
        graph = clocked(graph)
    builder = _Builder(graph, x, timesteps, rule_obj, percentile, V_INIT_MODES[v_init], bias, batch_size, correct,
                       fixed_point, split_weights, hold, readout, headroom)
    snn = builder.run(progress)
    names = {i: n.name for i, n in enumerate(graph.nodes)}
    report = ConversionReport(timesteps, rule, block, len(x), builder.timing, builder.errors)
    return ConversionResult(snn, {names[n]: t for n, t in builder.thetas.items() if n},
                            {names[n]: c for n, c in builder.scales.items()}, report, graph, timesteps,
                            rule, block, v_init, bias)


@dataclass
class _Layer:
    """A built population: its block, skip, float spec and neuron scale."""

    block: torch.nn.Module
    skip: Optional[torch.nn.Module]
    spec: object
    scale: int


class _Builder:
    """The layer-by-layer pass of :func:`convert` (see its docstring)."""

    def __init__(self, graph: Graph, x: torch.Tensor, timesteps: int, rule, percentile: float, u0: float,
                 bias_mode: str, batch_size: int, correct: bool = False, fixed_point: bool = True,
                 split_weights: bool = True, hold: int = 0, readout: Optional[int] = None,
                 headroom: float = HEADROOM):
        self.graph, self.x, self.t, self.rule, self.percentile = graph, x, timesteps, rule, percentile
        self.readout = timesteps if readout is None else readout
        self.u0, self.bias_mode, self.batch, self.correct = u0, bias_mode, max(1, batch_size), correct
        self.fixed_point, self.split_weights, self.hold = fixed_point, split_weights, int(hold)
        self.headroom = headroom
        #: T where a held layer front-loads its bias charge T·b' into v_init, else 0
        #: (:func:`~.build.neuron_state`).
        self.held_window = timesteps if self.hold else 0
        self.pops = plan(graph)
        where = locate(self.pops)
        self.sources = [sorted({where[op.source][0] for n in pop.nodes for op in graph.nodes[n].ops})
                        for pop in self.pops]
        if any(0 in s for s in self.sources[2:]):
            raise ConversionError("a shortcut reads the network's input directly, but a skip synapse must read "
                                  "a layer with neurons (the input has none): use block='restructured', which "
                                  "relays the shortcut through neurons, or put a conv + ReLU stem before the "
                                  "first residual block")
        skips = any(s != [q - 1] for q, s in enumerate(self.sources) if q)
        # Aligned timing is exact only for a chain whose layers never fire before their window.
        self.timing = "device" if skips or bias_mode == "current" else "aligned"
        self.latency = fire_start(len(self.pops) - 1, self.hold)
        #: With hold ≥ T every layer runs on spike counts (``held_counts``): ``spikes`` then
        #: holds counts (N, *shape); a batch that might clip v runs step by step on the
        #: trains those counts stand for (``held_steps``; population 1 on the input's own
        #: trains, ``trains0``: only it reads the input).
        self.collapsed = self.hold >= timesteps and bias_mode != "current"
        self.trains0: Optional[torch.Tensor] = None
        self.thetas = {0: 1.0}
        self.scales: dict = {}
        self.errors: list = []

    def run(self, progress: bool) -> ConvertedNetwork:
        """Convert every population in order; return the network (fixed point on)."""
        pad = device_padding(self.latency, self.t, self.readout) if self.timing == "device" else 0
        spikes = {0: torch.as_tensor(encode(self.x, self.t, self.u0, pad), dtype=torch.bool)}
        if self.collapsed:
            self.trains0, spikes[0] = spikes[0], spikes[0].sum(-1, dtype=torch.float32)
        acts = {0: self.x}
        nodes = self.graph.nodes
        node_last = {m: max((i for i, n in enumerate(nodes) for op in n.ops if op.source == m), default=-1)
                     for m in range(len(nodes))}
        pop_last = {p: max((q for q, s in enumerate(self.sources) if p in s), default=-1)
                    for p in range(len(self.pops))}
        blocks, skips, block_of = [], {}, {0: 0}
        for q in tqdm(range(1, len(self.pops)), desc="convert", disable=not progress, leave=False):
            pop = self.pops[q]
            for n in pop.nodes:
                z = sum(op(acts[op.source]) for op in nodes[n].ops)
                # the output's target is rectified too: the SNN only represents a > 0
                acts[n] = nodes[n].activate(z) if nodes[n].relu else torch.relu(z)
            if len(self.pops[q - 1].shape) == 3 and len(pop.shape) == 1:
                blocks.append(Flatten())
            block_of[q] = len(blocks) + 1
            layer = self._layer(q, spikes, acts, block_of)
            blocks.append(layer.block)
            if layer.skip is not None:
                skips[block_of[q]] = layer.skip
            for p in [p for p in spikes if pop_last[p] <= q and p != q]:
                del spikes[p]
            for m in [m for m in acts if node_last[m] <= max(pop.nodes)]:
                del acts[m]
        snn = ConvertedNetwork(self.pops[0].shape, blocks, skips, self.hold, self.t, self.readout)
        snn.set_fixed_point(True)
        return snn

    def _layer(self, q: int, spikes: dict, acts: dict, block_of: dict) -> _Layer:
        """Choose the thresholds of population q, build it, run it on the calibration batch
        (its spikes go to ``spikes[q]``, its errors to the report)."""
        pop, nodes = self.pops[q], self.graph.nodes
        base = {n: (self.thetas[nodes[n].relay_of] if nodes[n].relay_of is not None else 1.0 if nodes[n].clock
                    else base_threshold(self.rule, acts[n], self.percentile, nodes[n].clip)) for n in pop.nodes}
        own = [n for n in pop.nodes if not nodes[n].shares_layer]
        tunable = [n for n in own if not self._keeps_clip(n)]
        chosen = {n: 1.0 for n in pop.nodes}
        if len(self.rule.scales) > 1 and tunable:
            trial = self._build(q, base, block_of)
            accs = {c: {n: ErrorAccumulator() for n in pop.nodes} for c in self.rule.scales}
            for c in self.rule.scales:
                scale = {n: (c if n in tunable else 1.0) for n in pop.nodes}
                self._simulate(q, trial, {n: base[n] * scale[n] for n in pop.nodes}, spikes, acts, accs[c],
                               trial_scale=scale)
            for n in tunable:
                chosen[n] = min(self.rule.scales, key=lambda c: accs[c][n].mse())
        for n in pop.nodes:
            self.thetas[n] = chosen[n] * base[n]
            self.scales[n] = chosen[n]
        biased = [n for n in own if not self._lossless(n) and has_bias(self.graph, n)] if self.correct else []
        if biased:
            self._correct_biases(q, biased, spikes, acts, block_of)
        layer = self._build(q, {n: self.thetas[n] for n in pop.nodes}, block_of)
        accs = {n: ErrorAccumulator() for n in pop.nodes}
        spikes[q] = self._simulate(q, layer, self.thetas, spikes, acts, accs, keep=True)
        for n in pop.nodes:
            self.errors.append(accs[n].result(block_of[q], nodes[n].name, self.thetas[n], chosen[n], self._window(q)))
        return layer

    def _keeps_clip(self, n: int) -> bool:
        """Whether node n keeps θ = λ, its trained clip, without a search: a clip-floor-shift
        node with L ≤ T under a full hold. Held, it fires floor(z·T/λ + 1/2) clipped to
        [0, T] spikes at θ = λ: the ANN's clip, on a grid of T levels at least as fine as
        the ANN's L (every ANN level on it when L divides T). A scale c ≠ 1 moves the clip
        the later layers were trained on, and the per-node search, scoring the SNN's finer
        levels against the ANN's coarser ones on a small batch, fits that mismatch and the
        inherited error instead (docs/residual.md: ResNet-110, L = 4, T = 8: 0.766 with the
        search, 0.784 with θ = λ). Below L the SNN has fewer levels than the ANN and the
        search trades clipping for resolution, so it stays."""
        levels = self.graph.nodes[n].levels
        return self.rule.base is trained_clip and self.hold >= self.t and levels is not None and levels <= self.t

    def _lossless(self, n: int) -> bool:
        """Whether node n converts without error from exact input: a clip-floor-shift node
        with L = T under a full hold fires floor(z·T/λ + 1/2) clipped to [0, T] spikes at
        θ = λ, which is L·h(z)/λ (tests/test_hold.py). Its measured error is then all
        inherited (the input code's), which a bias shift would fit at the cost of moving
        the node off the ANN's grid, so bias correction leaves it alone too."""
        return self._keeps_clip(n) and self.graph.nodes[n].levels == self.t

    def _window(self, q: int) -> int:
        """Steps of population q's firing window: the readout R for the output, else T."""
        return self.readout if q == len(self.pops) - 1 else self.t

    def _correct_biases(self, q: int, nodes: list, spikes: dict, acts: dict, block_of: dict) -> None:
        """Cancel each channel's mean error in population q by its bias (see
        ``convert(correct=True)``), measured at the chosen thresholds."""
        pop = self.pops[q]
        accs = {n: ErrorAccumulator() for n in pop.nodes}
        self._simulate(q, self._build(q, {n: self.thetas[n] for n in pop.nodes}, block_of), self.thetas, spikes,
                       acts, accs)
        for n in nodes:
            add_bias(self.graph, n, -self.thetas[n] * accs[n].channel_mean())

    def _build(self, q: int, thetas: dict, block_of: dict) -> _Layer:
        """Population q with node thresholds ``thetas``, in the pass's arithmetic (fixed
        point or float; the network switches to fixed point at the end). The neurons of a
        readout window of R steps fire at θ·T/R (``convert(readout=R)``)."""
        gain = self.t / self._window(q)
        spec = layer_spec(self.graph, self.pops, q, {**self.thetas, **{n: th * gain for n, th in thetas.items()}},
                          self.u0)
        # bias steps in v_init: q (currents before the window) or T front-loaded with a hold
        scale, exp = choose_scale(spec, self.held_window or q, split=self.split_weights and spec.skip is None
                                  and q >= 2, hold=self.hold, window=self._window(q), headroom=self.headroom)
        if exp:
            spec = with_coarse_group(spec, scale, q - 1)
        current, v0 = neuron_state(spec, scale, q, self.bias_mode, self.held_window)
        src, dst = self.pops[q - 1].shape, self.pops[q].shape
        block = make_block(spec, scale, src, dst, current, v0)
        skip = None
        if spec.skip is not None:
            skip = make_skip(spec, block, block_of[spec.skip_source], self.pops[spec.skip_source].shape, dst, exp)
        if not self.fixed_point:
            block.synapse.pre_hook_fx = None
            block.neuron.fixed_point = False
            if skip is not None:
                skip.synapse.pre_hook_fx = None
        return _Layer(block, skip, spec, scale)

    @torch.no_grad()
    def _simulate(self, q: int, layer: _Layer, thetas: dict, spikes: dict, acts: dict, accs: dict,
                  trial_scale: Optional[dict] = None, keep: bool = False) -> Optional[torch.Tensor]:
        """Run population q over the calibration batch and add each node's errors to
        ``accs``; return its spikes (bool, what later layers see) when ``keep``.

        ``trial_scale`` evaluates thresholds c·θ on a layer built for θ: each node's input
        is divided by its c and its initial voltage recomputed (exact in float). Errors are
        measured over the population's window (:meth:`_window`), against the full-scale θ
        of ``thetas``."""
        pop, nodes, block, steps = self.pops[q], self.graph.nodes, layer.block, self._window(q)
        rows = None
        if trial_scale is not None:
            rows = torch.cat([torch.full((nodes[n].shape[0],), 1.0 / trial_scale[n], dtype=torch.float64)
                              for n in pop.nodes])
            spec = layer.spec
            trial = replace(spec, bias=spec.bias * rows)
            v0 = neuron_state(trial, layer.scale, q, self.bias_mode, self.held_window)[1]
            block.neuron.v_init = None if v0 is None else v0.float()
        kept = []
        sources = {"main": q - 1, "skip": layer.spec.skip_source}
        if layer.skip is not None:
            block.skip = layer.skip
        try:
            for start in range(0, len(self.x), self.batch):
                part = slice(start, start + self.batch)
                batch = {k: spikes[p][part].float() for k, p in sources.items() if p is not None}
                batch["main"] = self._main_input(q, batch["main"])
                held = starts = None
                if self.collapsed:
                    starts = tuple(None if p is None or p == 0 else fire_start(p, self.hold)
                                   for p in sources.values())
                    held = held_counts(block, batch["main"], batch.get("skip"), self.t, rows, starts, steps)
                if held is not None:
                    count, a = held
                    charge = a if block.neuron.v_init is None else a + block.neuron.v_init.reshape(
                        (-1,) + (1,) * (a.dim() - 2))
                else:
                    s, a, span = self._step_by_step(q, block, batch, starts, part, rows)
                    end = span.start + steps  # inputs and spikes up to the end of the window count
                    charge = a[..., :end].sum(-1)
                    if block.neuron.v_init is not None:
                        charge = charge + block.neuron.v_init.reshape((-1,) + (1,) * (a.dim() - 3))
                    count = s[..., :end].sum(-1)
                for k, n in enumerate(pop.nodes):
                    ch = pop.channels(k, self.graph)
                    accs[n].add(count[:, ch], charge[:, ch], acts[n][part], thetas[n], steps, layer.spec.u0[ch])
                if keep:
                    kept.append(count if self.collapsed else window(s, span, self.timing).bool())
        finally:
            if layer.skip is not None:
                del block.skip
        return torch.cat(kept) if keep else None

    def _main_input(self, q: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` (spikes (N, C, H, W, T) or counts (N, C, H, W) of population q - 1) as
        population q's main synapse reads it: flattened to (N, C·H·W, ...) where a dense
        population reads a conv one."""
        return x.flatten(1, 3) if len(self.pops[q].shape) == 1 and len(self.pops[q - 1].shape) == 3 else x

    def _step_by_step(self, q: int, block, batch: dict, starts: Optional[tuple], part: slice,
                      rows: Optional[torch.Tensor]):
        """(spikes, neuron input, window span) of population q for one calibration batch
        (its sources' spikes, the main one as :meth:`_main_input`), stepped through time. In
        a collapsed pass ``batch`` holds counts and ``starts`` their sources' window openings:
        population 1 steps on the input's own trains (only it reads the input), later ones
        alone around their window on the trains the counts stand for
        (:func:`~.network.held_steps`)."""
        if self.collapsed and q >= 2:
            return held_steps(block, [batch["main"], batch.get("skip")], starts, fire_start(q, self.hold),
                              self._window(q), rows)
        if self.collapsed:
            batch = {"main": self._main_input(q, self.trains0[part].float())}
        a, span = neuron_input(block, batch["main"], batch.get("skip"), self.timing, q, self.hold, self.t,
                               self._window(q))
        if rows is not None:
            a = a * rows.float().reshape((1, -1) + (1,) * (a.dim() - 2))
        return block.neuron(a), a, span
