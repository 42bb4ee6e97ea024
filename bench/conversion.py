"""ANN → SNN conversion on Fashion-MNIST: accuracy vs T for threshold rules × residual blocks.

    .venv/bin/python bench/conversion.py [--models 20,110,56] [--timesteps 4,8,16,32,64,128] \\
        [--deep-timesteps 4,8,16,32] [--holds 0,T] [--readouts 1,8] [--test 10000] [--calib 128] \\
        [--ann-dir bench/ann] [--activation relu|qcfs --levels 8 --width 4]

For every CIFAR-style ResNet (``models/ann.py``, ReLU or clip-floor-shift activation;
checkpoints from ``bench/train_ann.py``, trained here on the CPU when missing), every rule
(max / percentile / clip / tuned, and "clip+corrected" / "tuned+corrected" with bias correction;
clip only for clip-floor-shift ANNs), block
(standard / restructured), T, hold and readout window, it converts the ANN with ``snn2loihi.conversion.convert``
and measures the SNN's test accuracy in float (unquantized weights) and in Loihi fixed point
(the torch network in chip arithmetic, which equals the emulator's output counts: checked
with the emulator on ``--check`` images per model and block). Models deeper than 60 layers
use ``--deep-timesteps``.

Rows are appended to ``OUT/conversion.json`` after each configuration (atomically; a rerun
resumes), and ``OUT/conversion.md`` + ``OUT/conversion.png`` (accuracy vs T) are rewritten
from all rows at the end. JSON rows: ``model, layers, rule, block, timesteps, accuracy_ann,
accuracy_snn_float, accuracy_snn_fixed_point`` (fractions) plus ``activation`` (``relu`` or
``qcfs-L<L>``), width, hold, readout (R, the output layer's window in steps), test/calibration
sizes, latency, seconds, the output layer's conversion error and ``tied_top_fixed_point`` (the
fraction of test images whose top output count is shared by several classes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import snn2loihi  # noqa: E402,F401  (imports Lava's multiprocessing first)
from snn2loihi import allocator  # noqa: E402
from snn2loihi.atomic import atomic_path, write_json  # noqa: E402
from models.ann import (activation_label, count_layers, load_checkpoint, resnet, resnet_file,  # noqa: E402
                        save_checkpoint, train)
from snn2loihi.conversion import convert  # noqa: E402
from snn2loihi.conversion.build import HEADROOM  # noqa: E402  (rows without the key used it)
from snn2loihi.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from snn2loihi.sim.emulator import Emulator  # noqa: E402

#: Threshold rules, and with "+corrected" the same rule followed by bias correction
#: (``convert(correct=True)``).
RULES = ("max", "percentile", "clip", "tuned", "clip+corrected", "tuned+corrected")
BLOCKS = ("standard", "restructured")


def key(row: dict) -> tuple:
    """What identifies a measurement: the variant (model, activation, width, bias, test
    images) and the configuration (rule, block, T, hold, readout R). Rows from before the
    activation, bias, hold and readout columns are ReLU with timed biases, no hold and R = T."""
    return variant(row) + (row["rule"], row["block"], row["timesteps"], row.get("hold", 0), readout(row))


def readout(row: dict) -> int:
    """R, the output layer's firing window in steps (T unless the row used a longer one)."""
    return row.get("readout", row["timesteps"])


def method(row: dict) -> tuple:
    """(block, rule, hold, readout factor R/T): one table row and one plot line; a hold
    equal to the row's T is "T" (so that hold = T forms one curve over T)."""
    hold = row.get("hold", 0)
    return (row["block"], row["rule"], "T" if hold and hold == row["timesteps"] else hold,
            readout(row) // row["timesteps"])


def method_label(rule: str, hold, factor: int = 1) -> str:
    return (f"{rule}, hold {hold}" if hold else rule) + (f", readout {factor}T" if factor > 1 else "")


class Change(NamedTuple):
    """A converter change after which some older rows would give another result. Rows
    measured since carry ``key``; older rows of ``rules`` on a clip-floor-shift ANN of L
    levels at T with ``touches(L, T)``, under a full hold, are rendered with ``mark`` and
    ``footnote``; rerunning supersedes them."""

    key: str
    rules: tuple
    touches: Callable[[int, int], bool]
    mark: str
    footnote: str


CHANGES = (
    Change("lossless_kept", ("tuned", "tuned+corrected", "clip+corrected"), lambda levels, t: levels == t, "†",
           "Measured before `clip` and `tuned` left the clip-floor-shift layers of L = T alone under a full hold "
           "(they are lossless there; docs/residual.md); not rerun."),
    Change("clip_kept", ("tuned", "tuned+corrected"), lambda levels, t: levels < t, "‡",
           "Measured before `tuned` kept θ = λ, searching no scale, on the clip-floor-shift layers of L < T under "
           "a full hold (docs/residual.md); not rerun."),
)


def predates(row: dict) -> list:
    """The :data:`CHANGES` a row was measured before and that alter its configuration (a
    clip-floor-shift ANN under a full hold)."""
    act, t = row.get("activation", "relu"), row["timesteps"]
    if not act.startswith("qcfs-L") or row.get("hold", 0) < t:
        return []
    levels = int(act[len("qcfs-L"):])
    return [c for c in CHANGES if c.key not in row and row["rule"] in c.rules and c.touches(levels, t)]


def _marks(row: dict) -> str:
    return "".join(c.mark for c in predates(row))


def _init_from(train: dict) -> str:
    """' from CKPT at lr X' where the ANN was fine-tuned from another checkpoint, else ''."""
    return f" from {train['init_from']} at lr {train['lr']}" if train.get("init_from") else ""


def variant(row: dict) -> tuple:
    """(model, activation, width, bias, test images, ANN accuracy, v headroom): one table (and
    one plot panel where the whole test set was used). The ANN's accuracy tells two
    checkpoints of one architecture apart (CPU training is not bit-reproducible across
    machines); rows from before the headroom option used the default."""
    return (row["model"], row.get("activation", "relu"), row.get("width"), row.get("bias", "timed"),
            row["test_samples"], round(row["accuracy_ann"], 4), row.get("headroom", HEADROOM))


def ann_for(depth: int, args, data):
    path = os.path.join(args.ann_dir, resnet_file(depth, args.width, args.activation, args.levels))
    if not os.path.isfile(path):
        print(f"no {path}: training ResNet-{depth} (width {args.width}, {args.activation}) on the CPU for "
              f"{args.train_epochs} epochs on {args.train_images} images", flush=True)
        arch = {"name": "resnet", "depth": depth, "width": args.width, "activation": args.activation,
                "levels": args.levels}
        model = resnet(depth, args.width, activation=args.activation, levels=args.levels)
        if args.init_from:  # e.g. an L = 8 QCFS net fine-tuned to L = 4 (a deep one does not train at L = 4)
            model.load_state_dict(load_checkpoint(args.init_from)[0].state_dict())
        start = time.time()
        train(model, torch.tensor(data.x_train[:args.train_images]), torch.tensor(data.y_train[:args.train_images]),
              args.train_epochs, lr=args.train_lr)
        save_checkpoint(path, model, arch,
                        {"epochs": args.train_epochs, "train_images": args.train_images, "lr": args.train_lr,
                         "init_from": args.init_from and os.path.basename(args.init_from),
                         "train_seconds": time.time() - start, "device": "cpu"})
    model, arch, meta = load_checkpoint(path)
    return model, arch, meta


def tied_top(counts: np.ndarray) -> float:
    """Fraction of samples whose largest output count (N, classes) is shared by two or more classes:
    argmax then takes the lowest class index, a guess."""
    return float(np.mean((counts == counts.max(1, keepdims=True)).sum(1) > 1))


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return float(np.mean(np.concatenate([model(torch.tensor(x[k:k + 500])).argmax(1).numpy()
                                         for k in range(0, len(x), 500)]) == y))


def run(args) -> list:
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist(args.data_dir)
    x_test, y_test = data.x_test[:args.test], data.y_test[:args.test]
    calib = torch.tensor(data.x_train[:args.calib])
    path = os.path.join(args.out, "conversion.json")
    rows = json.load(open(path)) if os.path.isfile(path) else []
    done = {key(r) for r in rows}
    for depth in (int(d) for d in args.models.split(",")):
        ann, arch, meta = ann_for(depth, args, data)
        name, layers = f"ResNet-{depth}", count_layers(ann)
        act = activation_label(arch.get("activation", "relu"), arch.get("levels", 8))
        # clip = percentile for ReLU
        rules = [r for r in args.rules.split(",") if r.split("+")[0] != "clip" or act != "relu"]
        ann_acc = accuracy(ann, x_test, y_test)
        steps = [int(s) for s in (args.deep_timesteps if layers > 60 else args.timesteps).split(",")]
        configs = [(t, block, rule, t if hold == "T" else int(hold), int(factor) * t) for t in steps
                   for block in args.blocks.split(",") for rule in rules for hold in args.holds.split(",")
                   for factor in args.readouts.split(",")]
        for t, block, rule, hold, window in configs:
            ident = {"model": name, "activation": act, "width": arch.get("width"), "bias": args.bias,
                     "test_samples": len(x_test), "accuracy_ann": ann_acc, "rule": rule, "block": block, "timesteps": t, "hold": hold,
                     "readout": window, "headroom": args.headroom}
            if key(ident) in done or window > t and hold < t:  # a readout window needs a full hold
                continue
            start = time.time()
            result = convert(ann, calib, t, rule=rule.split("+")[0], block=block, bias=args.bias,
                             correct=rule.endswith("+corrected"), hold=hold, readout=window,
                             headroom=args.headroom)
            converted = time.time() - start
            counts = {m: result.counts(x_test, fixed_point=m) for m in (False, True)}
            row = {**ident, "layers": layers,
                   "accuracy_snn_float": float(np.mean(counts[False].argmax(1) == y_test)),
                   "accuracy_snn_fixed_point": float(np.mean(counts[True].argmax(1) == y_test)),
                   "calib_samples": len(calib), "latency": result.latency, "on_counts": result.snn.collapsible,
                   "timing": result.timing, "convert_seconds": round(converted, 1),
                   "eval_seconds": round(time.time() - start - converted, 1),
                   "output_error_rms": result.report.layers[-1].total,
                   "tied_top_fixed_point": tied_top(counts[True]), **{c.key: True for c in CHANGES},
                   "ann_train": {k: meta.get(k) for k in ("epochs", "train_images", "device", "init_from", "lr")}}
            if args.check and rule.startswith("tuned") and (hold or t == min(steps)):
                net, _ = result.export()
                x = result.encode(x_test[:args.check], pad=True)
                emulated = Emulator(net).run(x).output.sum(-1).reshape(len(x), -1)
                row["emulator_check"] = {"samples": len(x),
                                         "mismatched_counts": int((emulated != counts[True][:len(x)]).sum())}
            rows.append(row)
            write_json(path, rows, indent=1)
            print(f"{name} {act} {args.bias} T={t:3d} hold {hold:2d} R={window:4d} {block:12s} {rule:10s} "
                  f"ANN {ann_acc:.4f} SNN float "
                  f"{row['accuracy_snn_float']:.4f} fixed {row['accuracy_snn_fixed_point']:.4f} "
                  f"({row['convert_seconds']:.0f}+{row['eval_seconds']:.0f} s)", flush=True)
    return rows


def _order(var: tuple) -> tuple:
    """Largest test set first, then by depth."""
    return -var[4], int(var[0].split("-")[1]), var[1], var[2] or 0, var[3], var[5], -var[6]


def _method_order(m: tuple) -> tuple:
    block, rule, hold, factor = m
    return (BLOCKS.index(block), RULES.index(rule) if rule in RULES else len(RULES),
            1 << 30 if hold == "T" else hold, factor)


def _title(var: tuple) -> str:
    model, act, width, bias, test, ann, headroom = var
    return (f"{model}, {act}, width {width}, {bias} bias, {test} test images"
            + (f", v headroom {headroom:g}" if headroom != HEADROOM else ""))


def _title_with_ann(var: tuple) -> str:
    return f"{_title(var)}, ANN {var[5]:.4f}"


def write_markdown(rows: list, out: str, args) -> None:
    variants = sorted({variant(r) for r in rows}, key=_order)
    lines = ["# ANN → SNN conversion on Fashion-MNIST (bench/conversion.py)", "",
             "Rendered by `.venv/bin/python bench/conversion.py " + " ".join(args.argv) + "`.", "",
             "Accuracy (fraction) of the converted soft-reset IF SNN on the first test images (count per "
             "model below), float (unquantized weights) and Loihi fixed point (chip arithmetic, equal to the "
             "emulator's output counts: tests/test_conversion.py, and `emulator_check` in the JSON where a run "
             "did one). Thresholds from the first training images. T = input steps; the chip needs "
             "T + latency steps (latency = weight layers × (hold + 1)), R + latency with a readout window "
             "of R steps. Rows are per model, block and rule; a '–' is a "
             "configuration this run did not reach (the script resumes from conversion.json).", "",
             "Method (snn2loihi.conversion): BN folded, IF neurons with soft reset, u0 = θ/2, rate-coded "
             "input, spike-count readout; biases `timed` (constant currents with pre-compensated initial "
             "voltages, capped at the threshold, so deep layers with negative biases start their window "
             "short) or `clock` (weights from a clock channel of the layer before: exact at any depth); "
             "`clip` = θ = the clip λ the ANN learned with its clip-floor-shift activation (QCFS, Bu et al. "
             "2022; L levels); `tuned` = per-layer scale c ∈ {0.4 … 1.15} × that λ (or, for ReLU ANNs, the "
             "99.9th percentile) minimising the measured layer error at T (greedy from the input); "
             "`+corrected` = that rule, then bias correction (each channel's mean error on the calibration "
             "batch cancelled through its bias, layer by layer from the input; docs/residual.md). "
             "`standard` blocks use skip layers (shortcut one step early on the chip); `restructured` relays the "
             "shortcut through IF neurons (matched latency, plain chain). `hold h` = every layer integrates h "
             "steps before its firing window opens, `hold T` = h equal to the column's T (a per-layer fire "
             "window on the chip: the deviation error of uneven input mostly vanishes, entirely for h ≥ T; "
             "latency (h + 1) steps per layer, same spikes and synaptic operations; docs/residual.md). "
             "`readout kT` = the output layer (hold ≥ T) reads its held charge out over R = kT steps at a "
             "threshold k times lower: class scores in steps of θ/R instead of θ/T, fewer ties "
             "(`convert(readout=R)`; R - T more steps, every other layer unchanged).", ""]
    full = max(var[4] for var in variants)
    first_subset = next((v for v in variants if v[4] < full), None)
    for var in variants:
        sub = [r for r in rows if variant(r) == var]
        first = sub[0]
        if var == first_subset:
            lines += ["## Earlier runs on the first test images", "",
                      "Smaller test sets, from the sweeps that chose the ANN (QCFS), the bias path (clock) "
                      "and the hold; they predate the count run and are kept for those comparisons.", ""]
        lines += [f"{'##' if var[4] == full else '###'} {_title(var)} ({first['layers']} weight layers, ANN accuracy "
                  f"{first['accuracy_ann']:.4f} on these test images; ANN trained "
                  f"{first['ann_train']['epochs']} epoch{'s' if first['ann_train']['epochs'] != 1 else ''} on "
                  f"{first['ann_train']['train_images']} images"
                  f"{_init_from(first['ann_train'])}, "
                  f"{first['ann_train']['device']}; {first['calib_samples']} calibration images)", "",
                  "| block | rule | " + " | ".join(f"T={t}" for t in sorted({r['timesteps'] for r in sub})) + " |",
                  "|---|---|" + "---|" * len({r['timesteps'] for r in sub})]
        ts = sorted({r["timesteps"] for r in sub})
        for m in sorted({method(r) for r in sub}, key=_method_order):
            cells = []
            for t in ts:
                r = next((r for r in sub if method(r) == m and r["timesteps"] == t), None)
                cells.append("–" if r is None else
                             f"{r['accuracy_snn_float']:.3f} / {r['accuracy_snn_fixed_point']:.3f}{_marks(r)}")
            lines.append(f"| {m[0]} | {method_label(*m[1:])} | " + " | ".join(cells) + " |")
        for change in (c for c in CHANGES if any(c in predates(r) for r in sub)):
            lines += ["", f"{change.mark} {change.footnote}"]
        checks = [r["emulator_check"] for r in sub if "emulator_check" in r]
        if checks:
            lines += ["", f"Emulator vs torch fixed-point output counts: "
                          f"{sum(c['mismatched_counts'] for c in checks)} mismatches on "
                          f"{sum(c['samples'] for c in checks)} checked samples."]
        lines.append("")
    lines += ["Cells: float / fixed point. See conversion.png for the curves.", "", "## Targets (issue 4)", "",
              "The tuned + restructured SNN within 1 point of its ANN at T ≤ 32, and clearly better than "
              "max-norm conversion (here: by at least 1 point) at T ≤ 16; all in Loihi fixed point. Max-norm: "
              "the best `max` row at that T (any block and hold); best: the best row at that T. Largest test "
              "set only.", ""]
    for var in (v for v in variants if v[4] == full):
        sub = {method(r) + (r["timesteps"],): r for r in rows if variant(r) == var}
        tuned = [k for k in sorted(sub, key=lambda k: (k[4], _method_order(k[:4])))
                 if k[0] == "restructured" and k[1].startswith("tuned")]
        if not tuned:
            continue
        lines += [f"### {_title_with_ann(var)}", "", "| T | tuned + restructured | gap to ANN | ≤ 1 point | max-norm | "
                  "tuned − max | clearly better | best here | steps on the chip |", "|---|---|---|---|---|---|---|---|---|"]
        for k in tuned:
            row, t = sub[k], k[4]
            acc = row["accuracy_snn_fixed_point"]
            gap = row["accuracy_ann"] - acc
            bases = [r for m, r in sub.items() if m[1] == "max" and m[4] == t]
            base = max(bases, key=lambda r: r["accuracy_snn_fixed_point"], default=None)
            top = max((r for m, r in sub.items() if m[4] == t), key=lambda r: r["accuracy_snn_fixed_point"])
            lift = None if base is None else acc - base["accuracy_snn_fixed_point"]
            lines.append(
                f"| {t} | {acc:.3f}{_marks(row)} ({method_label(*k[1:4])}) | {100 * gap:.1f} | "
                f"{('yes' if round(100 * gap, 1) <= 1.0 else 'no') if t <= 32 else '(T > 32)'} | "
                + ("– | – | – | " if base is None else
                   f"{base['accuracy_snn_fixed_point']:.3f} ({base['block']}, {method_label(*method(base)[1:])}) | "
                   f"{100 * lift:+.1f} | {('yes' if round(100 * lift, 1) >= 1.0 else 'no') if t <= 16 else '(T > 16)'} | ")
                + f"{top['accuracy_snn_fixed_point']:.3f} ({top['block']}, "
                f"{method_label(*method(top)[1:])}) | {readout(row) + row['latency']} |")
        lines.append("")
    with atomic_path(os.path.join(out, "conversion.md")) as tmp, open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(rows: list, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = max(r["test_samples"] for r in rows)
    variants = sorted({variant(r) for r in rows if r["test_samples"] == full}, key=_order)
    fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 4), squeeze=False)
    for ax, var in zip(axes[0], variants):
        sub = [r for r in rows if variant(r) == var]
        colors = dict(zip(RULES, ("tab:red", "tab:blue", "tab:purple", "tab:green", "tab:orange", "tab:olive")))
        for block, rule, hold, factor in sorted({method(r) for r in sub}, key=_method_order):
            pts = sorted((r["timesteps"], r["accuracy_snn_fixed_point"]) for r in sub
                         if method(r) == (block, rule, hold, factor))
            ax.plot(*zip(*pts), "--" if block == "standard" else "-", color=colors.get(rule, "k"),
                    marker="^" if factor > 1 else "s" if hold else "o", alpha=1.0 if not hold or factor > 1 else 0.6,
                    label=f"{method_label(rule, hold, factor)}, {block}")
        ax.axhline(sub[0]["accuracy_ann"], color="k", lw=1, label="ANN")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T (input steps)")
        ax.set_ylabel("test accuracy (Loihi fixed point)")
        ax.set_title(_title_with_ann(var), fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, loc="lower right")  # panels hold different methods (readout, rules)
    fig.tight_layout()
    with atomic_path(os.path.join(out, "conversion.png")) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="20,110,56", help="ResNet depths, in the order run")
    p.add_argument("--timesteps", default="4,8,16,32,64,128")
    p.add_argument("--deep-timesteps", default="4,8,16,32", help="T for models with more than 60 layers")
    p.add_argument("--rules", default=",".join(RULES))
    p.add_argument("--blocks", default=",".join(BLOCKS))
    p.add_argument("--holds", default="0,T", help="comma-separated holds (steps each layer integrates before "
                   "firing); T: equal to each configuration's T (then the SNN is evaluated on spike counts)")
    p.add_argument("--readouts", default="1", help="comma-separated readout factors k: the output layer fires "
                   "over R = k·T steps (k > 1 only with a hold of T)")
    p.add_argument("--test", type=int, default=10000, help="first test images (10000: all of Fashion-MNIST's)")
    p.add_argument("--calib", type=int, default=128)
    p.add_argument("--headroom", type=float, default=HEADROOM,
                   help="convert(headroom=...): membrane range a held layer keeps free of the 24-bit clip")
    p.add_argument("--check", type=int, default=8, help="emulator spot check images")
    p.add_argument("--ann-dir", default="bench/ann")
    p.add_argument("--width", type=int, default=4, help="ResNet width (stem channels)")
    p.add_argument("--activation", default="relu", choices=("relu", "qcfs"),
                   help="the ANN's activation (qcfs: clip-floor-shift, converts at small T)")
    p.add_argument("--levels", type=int, default=8, help="L of the qcfs activation")
    p.add_argument("--bias", default="clock", choices=("clock", "timed", "current"),
                   help="how biases reach the neurons (snn2loihi.conversion.convert)")
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--train-images", type=int, default=60000)
    p.add_argument("--train-lr", type=float, default=0.1, help="peak SGD learning rate (models.ann.train)")
    p.add_argument("--init-from", help="ANN checkpoint of the same ResNet to start training from (its QCFS "
                   "levels may differ: fine-tuning to --levels)")
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--merge", nargs="*", default=[], help="also take the rows of these conversion.json files "
                   "(a row replaces an earlier one of the same configuration: a rerun supersedes)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the .md/.png from the JSON rows")
    args = p.parse_args(argv)
    allocator.keep_freed_memory()  # large tensors reuse freed pages (docs/performance.md)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "conversion.json")
    if args.merge:
        rows = json.load(open(path)) if os.path.isfile(path) else []
        for other in args.merge:
            new = json.load(open(other))
            replaced = {key(r) for r in new}
            rows = [r for r in rows if key(r) not in replaced] + new
        write_json(path, rows, indent=1)
    rows = json.load(open(path)) if args.report_only else run(args)
    write_markdown(rows, args.out, args)
    plot(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
