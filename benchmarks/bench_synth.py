"""Synthetic benchmark speed: records per second per core, in memory and written to disk.

`python -m benchmarks synth [--records N] [--fs 500] [--seconds 10]` generates N
records of the default four domains in one process (one core: BLAS held to one
thread) and prints records/s for generation alone and for generation plus writing the
challenge-format files. The target (issue 3) is >= 500 records/s per core for 10 s,
500 Hz, 12-lead records. "Per core" is records per CPU-second of this process, which a
shared machine does not distort the way it distorts wall-clock time; both are printed,
with a reference (numpy's normal draws of one record's size) timed the same way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import yaml
from threadpoolctl import threadpool_limits

from heartbeatai.config import ConfigError
from heartbeatai.data.synthetic import generate, write_benchmark

TARGET_PER_CORE = 500.0


def _rates(n: int, fn) -> tuple[float, float]:
    """(per CPU-second, per wall-second) rates of n items done by fn()."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks synth", description=__doc__)
    parser.add_argument("--records", type=int, default=None, help="speed: 1000; separability: 800; learnability: 800")
    parser.add_argument("--fs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--separability", action="store_true",
                        help="instead: domain classifier after the study's preprocessing, shift 0 and 1")
    parser.add_argument("--learnability", action="store_true",
                        help="instead: train the platform's model (demo trial) within and across domains")
    parser.add_argument("--held-out", default="georgia", help="learnability: the held-out domain")
    parser.add_argument("--parts", type=int, default=1, help="learnability: reference parts to train (1-5)")
    parser.add_argument("--epochs", type=int, default=None, help="learnability: epochs (default: the demo's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a change, dotted key and YAML value, to the demo's trial (learnability: "
                             "model.kernel=9, model.depths=[2,2,2]) or to every algorithm's trial but ERM's "
                             "(acquisition-gap: algorithm.penalty_weight=0.04); repeatable")
    parser.add_argument("--acquisition-gap", type=float, default=None, metavar="STRENGTH",
                        help="instead: the acquisition shortcut at this strength (0-1): the turned class's AUROC "
                             "under LODO per zoo algorithm against ERM on the matched reference")
    parser.add_argument("--algorithms", default="erm,irm,vrex,groupdro,mixstyle",
                        help="acquisition-gap: algorithms of studies/configs/dg_zoo.yaml (comma-separated)")
    parser.add_argument("--seeds", default="1", help="acquisition-gap: training seeds (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.acquisition_gap is not None:
        return _acquisition_gap(args)
    if args.separability:
        return _separability(args)
    if args.learnability:
        return _learnability(args)
    args.records = args.records or 1000
    n = args.records
    generate(8, fs=args.fs, seconds=args.seconds)  # warm caches (filter designs, imports)

    rng = np.random.default_rng(0)
    samples = int(args.fs * args.seconds)
    with threadpool_limits(1):
        reference = _rates(n, lambda: [rng.standard_normal((samples, 12)) for _ in range(n)])
    in_memory = _rates(n, lambda: generate(n, fs=args.fs, seconds=args.seconds, seed=1))
    with tempfile.TemporaryDirectory() as tmp:
        written = _rates(n, lambda: write_benchmark(tmp, n, fs=args.fs, seconds=args.seconds, seed=1))

    status = "meets" if in_memory[0] >= TARGET_PER_CORE else "MISSES"
    print(f"synthetic records ({args.seconds:g} s, {args.fs} Hz, 12 leads, 4 domains, 1 process, N={n}):")
    print("                                  per CPU-second   per wall-second")
    for name, (cpu, wall) in [("generate (in memory)", in_memory), ("generate + write .hea/.mat", written),
                              ("reference: numpy normal draws", reference)]:
        print(f"  {name:30s} {cpu:12.0f}   {wall:14.0f}")
    print(f"  per-core generation {status} the {TARGET_PER_CORE:.0f} records/s target; 20,000 records take "
          f"{20000 / in_memory[0]:.0f} CPU-s to generate, {20000 / written[0]:.0f} CPU-s with writing")
    return 0


def _separability(args) -> int:
    from benchmarks.synth_probes import FEATURE_GROUPS, separability

    n = args.records or 800
    print(f"domain classifier (random forest, 4-fold CV) on preprocessed windows: {n} records, style shift only, "
          "100 Hz, 0.5-45 Hz band-pass, per-lead z-score over 5 s")
    for shift in (0.0, 1.0):
        result = separability(n, shift=shift, seed=11 + args.seed, workers=args.workers)
        print(f"  shift {shift:g}: balanced accuracy {result['balanced_accuracy']:.3f} (chance {result['chance']:.2f})")
        print("    confusion (rows true, columns predicted):", ", ".join(result["domains"]))
        for name, row in zip(result["domains"], result["confusion"]):
            print(f"    {name:8s} {' '.join(f'{v:4d}' for v in row)}")
    for group in FEATURE_GROUPS:
        alone = separability(n, shift=1.0, seed=11 + args.seed, workers=args.workers, groups=(group,))
        print(f"  shift 1, {group} alone: balanced accuracy {alone['balanced_accuracy']:.3f}")
    return 0


def _overrides(items: list[str]) -> dict | None:
    """`--set KEY=VALUE` as {dotted key: YAML value}; None (after one line on stderr) if malformed."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"--set: expected KEY=VALUE, got {item!r}", file=sys.stderr)
            return None
        overrides[key] = yaml.safe_load(value)
    return overrides


def _acquisition_gap(args) -> int:
    """The acquisition shortcut's probe (docs/synthetic.md, "Acquisition shortcut"): for each
    held-out domain, the class it turns round, scored by each zoo algorithm trained on the
    other domains and by ERM trained within distribution (the matched reference)."""
    import os
    from pathlib import Path

    import torch

    from benchmarks.synth_probes import acquisition_gap
    from heartbeatai.study.study_config import load_study_config

    torch.set_num_threads(1)
    zoo = load_study_config(Path(__file__).resolve().parents[1] / "studies" / "configs" / "dg_zoo.yaml")
    names = [a for a in args.algorithms.split(",") if a]
    trials = {name: zoo.algorithm_base(name) for name in dict.fromkeys(["erm", *names])}
    if args.epochs:
        trials = {name: t.with_overrides({"optim.epochs": args.epochs}) for name, t in trials.items()}
    overrides = _overrides(args.overrides)
    if overrides is None:
        return 2
    try:  # the algorithms' trials only: ERM also trains the reference, the yardstick
        trials = {name: t if name == "erm" or not overrides else t.with_overrides(overrides)
                  for name, t in trials.items()}
    except ConfigError as err:
        print(f"--set: {err}", file=sys.stderr)
        return 2
    seeds = tuple(int(s) for s in args.seeds.split(","))
    n = args.records or 1600
    print(f"acquisition shortcut {args.acquisition_gap:g}: {n} records, dg_zoo.yaml's trial "
          f"({trials['erm'].optim.epochs} epochs), algorithms {', '.join(trials)}, seeds {seeds}, benchmark seed "
          f"{args.seed}; {os.cpu_count()} CPU(s), torch {torch.__version__}", flush=True)
    rows = acquisition_gap(n, trials, strength=args.acquisition_gap, seeds=seeds, seed=args.seed,
                           progress=lambda line: print(line, flush=True))
    turned = [c for c in rows.columns if c.startswith("auroc_")]
    rows["turned_auroc"] = rows[turned].mean(axis=1, skipna=True)  # the held-out domain's turned class(es)
    table = rows.groupby(["held_out", "model"])[["turned_auroc", "macro_auroc"]].mean().unstack("model")
    print("the turned class's AUROC (mean over seeds) per held-out domain, and the mean over domains:")
    print(table["turned_auroc"].round(3).to_string())
    print("  mean " + "  ".join(f"{m} {v:.3f}" for m, v in table["turned_auroc"].mean().items()))
    print("macro AUROC:")
    print("  mean " + "  ".join(f"{m} {v:.4f}" for m, v in table["macro_auroc"].mean().items()))
    return 0


def _learnability(args) -> int:
    from benchmarks.synth_probes import learnability

    n = args.records or 800
    overrides = _overrides(args.overrides)
    if overrides is None:
        return 2
    cpu = time.process_time()
    wall = time.perf_counter()
    try:
        result = learnability(n, held_out=args.held_out, parts=args.parts, epochs=args.epochs, seed=args.seed,
                              workers=args.workers, overrides=overrides)
    except ConfigError as err:
        print(f"--set: {err}", file=sys.stderr)
        return 2
    print(f"per-class F1 on {result['records']} {result['held_out']} records (true labels), benchmark of {n} "
          f"records: within = reference:{result['held_out']}:<part> (all domains, LODO's size), "
          f"across = lodo:{result['held_out']}")
    print(f"  {'class':7s} {'pos':>4s} {'LODO train prev':>15s} {'F1 within':>9s} {'across':>7s} "
          f"{'AUROC within':>12s} {'across':>7s}")
    for row in sorted(result["classes"], key=lambda r: -r["positives"]):
        print(f"  {row['class']:7s} {row['positives']:4d} {row['lodo_train_prevalence']:15.3f} "
              f"{row['within']:9.2f} {row['across']:7.2f} {row['within_auroc']:12.2f} {row['across_auroc']:7.2f}")
    print(f"  macro-F1 over classes with >= {result['min_positives']} positives: within "
          f"{result['macro_within']:.3f}, across {result['macro_across']:.3f}")
    print("  within, the same models' calls under other threshold rules (macro-F1):")
    for rule, value in result["threshold_rules"].items():
        print(f"    {rule:45s} {value:.3f}")
    print(f"  ({time.process_time() - cpu:.0f} CPU-s, {time.perf_counter() - wall:.0f} s)")
    return 0
