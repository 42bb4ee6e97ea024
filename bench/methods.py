#!/usr/bin/env python
"""Benchmark: the three training methods on Fashion-MNIST, trained, exported and run on the chip.

For each recipe ``models/recipes/fmnist_<method>.yaml`` (tet, sdt, stbp, stbp_neunorm,
hybrid) this script

1. trains it with :class:`snn2loihi.training.trainer.Trainer` (resumable: ``--resume``);
2. exports the trained model to a netx file and evaluates the re-read file on the batched
   fixed-point emulator over the whole test split (or ``--test-subset``): Loihi fixed-point
   accuracy and spikes per inference;
3. runs ``--lava-samples`` test samples on Lava's CPU backend and counts the spike values
   that differ from the emulator at every layer (skipped with a message where Lava cannot
   run).

Training needs no Lava; steps 2–3 do (the emulator's dense synapse reuses netx's weight
packing). On a GPU machine without a working Lava, train with ``--skip-chip`` and run
steps 2–3 later where Lava works with ``--evaluate-only`` on the same ``--runs-dir``.

NeuNorm does not deploy, so its row has the torch fixed-point accuracy only. The hybrid
recipe adds a ``conversion`` row: the converted SNN before STDB, at its (large) T.

Writes ``bench/results/<name>.json`` (a list of rows with ``method``, ``dataset``,
``timesteps``, ``accuracy_float``, ``accuracy_fixed_point``, ``lava_mismatched_spikes``,
``epochs``, ``train_seconds``, ``spikes_per_inference`` and more) and ``<name>.md``.

Sizes: the recipes are the full runs (60k/10k); ``--train-subset``, ``--test-subset``,
``--epochs-scale`` and ``--width`` shrink them for a CPU, e.g.
``python bench/methods.py --train-subset 3000 --test-subset 1000 --epochs-scale 0.2 --width 0.25``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time

import torch

import snn2loihi
from snn2loihi import allocator
from snn2loihi.errors import QuantizationError
from snn2loihi.training.deploy import evaluate_chip, export_classifier, lava_check, load_classifier
from snn2loihi.training.inputs import InputEncoding, load_dataset
from snn2loihi.training.recipe import load_recipe
from snn2loihi.training.trainer import CONVERTED, Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METHODS = ("tet", "sdt", "stbp", "stbp_neunorm", "hybrid")
#: The rows each method writes (hybrid also measures the converted network it starts from).
ROWS_OF = {"hybrid": ("hybrid", "conversion")}


def shrink(recipe: dict, args: argparse.Namespace) -> dict:
    """The recipe with the command line's size overrides applied."""
    recipe = copy.deepcopy(recipe)
    data = recipe["data"]
    for key in ("train_subset", "test_subset"):
        if getattr(args, key):
            data[key] = getattr(args, key)
    if args.data_dir:
        data["data_dir"] = args.data_dir
    if args.width:
        recipe["model"]["args"]["width"] = args.width
        if recipe["method"] == "hybrid":
            recipe["ann"]["args"]["width"] = args.width
    if args.batch_size:
        recipe["train"]["batch_size"] = args.batch_size
    for stage in recipe["train"]["stages"]:
        stage["epochs"] = max(1, int(math.ceil(stage["epochs"] * args.epochs_scale)))
    if recipe["method"] == "hybrid":
        recipe["ann"]["epochs"] = max(1, int(math.ceil(recipe["ann"]["epochs"] * args.epochs_scale)))
    if args.device:
        recipe["device"] = args.device
    recipe["name"] = f"{recipe['name']}_{args.run_suffix or args.name}"
    return recipe


def code_version() -> str:
    """The commit that measured a row (``+dirty`` with uncommitted changes), so stale rows
    kept by ``--rows-from`` can be told from fresh ones. Read once, when the run starts
    (:data:`CODE`): the code a long run executes is what it imported then."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


CODE = code_version()


def chip_row(checkpoint: str, label: str, args: argparse.Namespace, summary: dict) -> dict:
    """Export + emulator (+ Lava) evaluation of one checkpoint, as a results row."""
    model, state = load_classifier(checkpoint)
    recipe = state["recipe"]
    data, _ = load_dataset({**recipe["data"], **({"test_subset": args.test_subset} if args.test_subset else {})})
    encoding = InputEncoding(recipe["data"]["input"], recipe["seed"])
    row = {"method": label, "dataset": f"{data.name} ({len(data.x_train)} train / {len(data.x_test)} test, "
                                      f"input {recipe['data']['input']})",
           "timesteps": int(model.timesteps), "accuracy_float": summary.get("accuracy_float"),
           "accuracy_fixed_point_torch": summary.get("accuracy_fixed_point_torch"),
           "accuracy_fixed_point": None, "lava_mismatched_spikes": None,
           "epochs": summary.get("epochs"), "train_seconds": summary.get("train_seconds"),
           "train_device": summary.get("device"),
           "spikes_per_inference": None, "test_samples": int(len(data.x_test)), "deployable": True,
           "recipe": recipe["name"], "checkpoint": os.path.relpath(checkpoint, ROOT), "code": CODE}
    if summary.get("note"):
        row["note"] = summary["note"]
    if args.skip_chip:
        row["note"] = "chip evaluation skipped (--skip-chip); run --evaluate-only where Lava works"
        return row
    net_path = os.path.join(os.path.dirname(checkpoint), f"{os.path.basename(checkpoint)[:-3]}.net")
    try:
        net, report = export_classifier(model, net_path)
    except QuantizationError as err:
        row.update(deployable=False, note=str(err))
        return row
    t0 = time.perf_counter()
    chip = evaluate_chip(model, net, data.x_test, data.y_test, encoding, batch_size=args.chip_batch,
                         device=args.device or "cpu")
    row.update(accuracy_fixed_point=chip.accuracy, spikes_per_inference=chip.spikes_per_inference,
               overflow=chip.overflow, emulator_seconds=time.perf_counter() - t0, latency=net.latency,
               weights_clipped=sum(q.weights_clipped for q in report.layers))
    if args.lava_samples and not args.skip_lava:
        row.update(lava_check_row(model, net, data, encoding, args.lava_samples))
    return row


def lava_check_row(model, net, data, encoding, samples: int) -> dict:
    """Lava-vs-emulator fields of a row; a message instead where Lava cannot run."""
    try:
        result = lava_check(model, net, data.x_test, data.y_test, encoding, samples=samples)
    except Exception as err:  # Lava's runtime can fail on machines it does not support
        return {"lava_note": f"Lava check skipped: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    return {"lava_mismatched_spikes": result["mismatched_spikes"], "lava_samples": result["samples"],
            "lava_spike_values_compared": result["spike_values_compared"], "lava_accuracy": result["lava_accuracy"]}


def run_method(method: str, args: argparse.Namespace) -> list[dict]:
    recipe = shrink(load_recipe(os.path.join(ROOT, "models", "recipes", f"fmnist_{method}.yaml")), args)
    out = os.path.join(args.runs_dir, recipe["name"])
    checkpoint = os.path.join(out, "checkpoint.pt")
    summary_path = os.path.join(out, "summary.json")
    if args.evaluate_only:
        with open(summary_path) as handle:
            summary = json.load(handle)
    else:
        summary = Trainer(recipe, out, progress=not args.quiet).run(resume=args.resume and os.path.exists(checkpoint))
    rows = [chip_row(checkpoint, method, args, summary)]
    conversion = summary.get("info", {}).get("conversion")
    if conversion:
        converted = {"accuracy_float": None, "accuracy_fixed_point_torch": conversion["converted_accuracy"],
                     "epochs": 0, "train_seconds": None}
        conv_args = argparse.Namespace(**{**vars(args), "test_subset": args.conversion_test_subset or args.test_subset})
        rows.insert(0, chip_row(os.path.join(out, CONVERTED), "conversion", conv_args, converted))
        rows[-1]["converted_accuracy_at_T_before_stdb"] = conversion["converted_accuracy_at_T"]
    return rows


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def claims(rows: list[dict]) -> list[str]:
    """The issue's targets, checked on the measured rows."""
    by = {r["method"]: r for r in rows}
    lines = []
    deployed = [r for r in rows if r["accuracy_fixed_point"] is not None and r["timesteps"] <= 8]
    if deployed:
        best = max(deployed, key=lambda r: r["accuracy_fixed_point"])
        loss = 100 * ((best["accuracy_float"] or 0) - best["accuracy_fixed_point"])
        lines.append(f"- Best deployed method at T ≤ 8: **{best['method']}**, {_pct(best['accuracy_fixed_point'])} % "
                     f"fixed point at T = {best['timesteps']} (target ≥ 92.0 %: "
                     f"{'met' if best['accuracy_fixed_point'] >= 0.92 else 'NOT met'}); float → fixed point "
                     f"{loss:+.2f} points lost (target ≤ 0.3: {'met' if loss <= 0.3 else 'NOT met'}).")
    if "conversion" in by and "hybrid" in by:
        c, h = by["conversion"], by["hybrid"]
        ca, ha = c["accuracy_fixed_point"] or c["accuracy_fixed_point_torch"], h["accuracy_fixed_point"]
        ratio = c["timesteps"] / h["timesteps"]
        before = h.get("converted_accuracy_at_T_before_stdb")
        ok = None not in (ha, ca, before) and ha >= ca and ha > before and ratio >= 5
        lines.append(f"- Hybrid STDB: {_pct(ha)} % at T = {h['timesteps']} vs converted {_pct(ca)} % at "
                     f"T = {c['timesteps']} ({ratio:.1f}× fewer steps; before STDB the converted net scored "
                     f"{_pct(before)} % at T = {h['timesteps']}; the claim needs hybrid ≥ converted and > before "
                     f"STDB): claim "
                     f"{'reproduced' if ok else 'NOT reproduced'}.")
    if "tet" in by and "sdt" in by:
        t, s = by["tet"], by["sdt"]
        key = "accuracy_fixed_point" if t["accuracy_fixed_point"] is not None else "accuracy_float"
        lines.append(f"- TET {_pct(t[key])} % vs SDT {_pct(s[key])} % at T = {t['timesteps']} ({key}): TET ≥ SDT "
                     f"{'holds' if t[key] >= s[key] else 'does NOT hold'}.")
    if "stbp" in by and "stbp_neunorm" in by:
        a, b = by["stbp"], by["stbp_neunorm"]
        lines.append(f"- NeuNorm ablation (torch fixed point): STBP {_pct(a['accuracy_fixed_point_torch'])} % "
                     f"without, {_pct(b['accuracy_fixed_point_torch'])} % with NeuNorm.")
    return lines


def write(rows: list[dict], args: argparse.Namespace, seconds: float) -> None:
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, args.name)
    with open(path + ".json", "w") as handle:
        json.dump(rows, handle, indent=2, default=float)
    lines = [f"# Training methods on Fashion-MNIST: float, Loihi fixed point, Lava ({args.name})", "",
             f"Command: `{' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}`  ",
             f"This invocation: {platform.node()}, {platform.machine()}, torch {torch.__version__}, device "
             f"{args.device or 'cpu'}, {torch.get_num_threads()} threads, {seconds / 60:.1f} min "
             f"({'evaluation only' if args.evaluate_only else 'training and evaluation'}). Training device per row.",
             "",
             "| method | T | epochs | train s (device) | float % | fixed point % (emulator, test samples) | "
             "fixed point % (torch) | Lava mismatched spikes | spikes / inference | code |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lava = r["lava_mismatched_spikes"]
        lava = f"{lava} of {r.get('lava_spike_values_compared')} ({r.get('lava_samples')} samples)" \
            if lava is not None else "n/a"
        spikes = "n/a" if r["spikes_per_inference"] is None else f"{r['spikes_per_inference']:.0f}"
        seconds_ = "n/a" if r["train_seconds"] is None else f"{r['train_seconds']:.0f} ({r.get('train_device')})"
        chip = _pct(r["accuracy_fixed_point"]) + ("" if r["accuracy_fixed_point"] is None else f" ({r['test_samples']})")
        lines.append(f"| {r['method']} | {r['timesteps']} | {r['epochs']} | {seconds_} | {_pct(r['accuracy_float'])} | "
                     f"{chip} | {_pct(r['accuracy_fixed_point_torch'])} | {lava} | {spikes} | {r.get('code', 'n/a')} |")
    datasets: dict = {}
    for r in rows:
        datasets.setdefault(r["dataset"], []).append(r["method"])
    lines += [""] + [f"Dataset of {', '.join(m)}: {d}.  " for d, m in datasets.items()] + [""]
    if args.provenance:
        with open(args.provenance) as handle:
            lines += [handle.read().rstrip(), ""]
    lines += ["## Targets", ""] + claims(rows)
    notes = [f"- {r['method']}: {r[k]}" for r in rows for k in ("note", "lava_note") if r.get(k)]
    if notes:
        lines += ["", "## Notes", ""] + notes
    with open(path + ".md", "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of {METHODS} ('none': only re-render --rows-from)")
    p.add_argument("--train-subset", type=int, help="training samples (default: all 60000)")
    p.add_argument("--test-subset", type=int, help="test samples (default: all 10000)")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiplies every stage's epochs (≥ 1 each)")
    p.add_argument("--width", type=float, help="overrides the recipes' width")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--data-dir", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    p.add_argument("--lava-samples", type=int, default=20, help="test samples compared on Lava CPU (0: none)")
    p.add_argument("--skip-lava", action="store_true", help="no Lava check (e.g. where Lava cannot run)")
    p.add_argument("--skip-chip", action="store_true", help="train only: no export, emulator or Lava")
    p.add_argument("--evaluate-only", action="store_true", help="reuse the trained runs: export, emulator, Lava")
    p.add_argument("--chip-batch", type=int, default=500, help="emulator batch size")
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "runs", "bench"))
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--name", default="methods", help="results file name (and run folder suffix)")
    p.add_argument("--run-suffix", help="run folder suffix when it differs from --name")
    p.add_argument("--conversion-test-subset", type=int,
                   help="test samples for the chip evaluation of the converted (long-T) network")
    p.add_argument("--rows-from", help="JSON rows of an earlier run to keep for methods not in --methods")
    p.add_argument("--provenance", help="Markdown file inserted into the report (how the runs were made)")
    p.add_argument("--resume", action="store_true", help="continue interrupted training runs")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    allocator.keep_freed_memory()  # large tensors reuse freed pages (docs/performance.md)
    methods = [m for m in args.methods.split(",") if m and m != "none"]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    start = time.perf_counter()
    rows: list[dict] = []
    if args.rows_from:
        with open(args.rows_from) as handle:
            replaced = {row for m in methods for row in ROWS_OF.get(m, (m,))}
            rows = [r for r in json.load(handle) if r["method"] not in replaced]
    for method in methods:
        rows += run_method(method, args)
        write(rows, args, time.perf_counter() - start)
    if not methods:  # only re-render the rows of --rows-from
        write(rows, args, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
