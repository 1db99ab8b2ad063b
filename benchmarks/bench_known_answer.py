"""Known-answer study: how often the study's own decision rule recovers two planted truths.

`studies/configs/known_answer.yaml` is a synthetic LODO study whose answer is known by
construction (docs/synthetic.md, "Known-answer study"): the benchmark plants a spurious age
shortcut (data.synthetic.age_shortcut): the recorded age all but names a few target classes,
and every fold's held-out hospital ties each of them to the other end of the age range than
its training hospitals' majority does, so

- the planted benefit: `demographics` (age and sex fed to the classifier) must be decided
  "worse" than `full` across the held-out domains;
- the planted null: the same study with `age_shortcut: 0` (labels independent of age and
  sex) must not decide `demographics` "better".

Each repeat regenerates the benchmark with another seed and runs the whole study twice
(with the shortcut, then without), each with its search, every arm at every arm seed and
the analysis, in this process with the real training loop (heartbeatai.testing.
FakeStageRunner: Optuna TPE and ASHA's rule, no Ray). It reads the `decision` of the
across-fold ablation_tests row, the platform's own rule (docs/analysis.md), and prints the
per-fold differences and each planted truth's recovery rate.

    python -m benchmarks known_answer [--repeats 5] [--records N] [--metric macro_auroc]

`--effect-size` first checks, outside the study, that the planted effect exists and grows
with the strength: every arm of the config trained on every LODO fold at `--seeds` (default
1,2) for each `--age-shortcut` strength, its macro AUROC against `full`'s per fold
(benchmarks/synth_probes.arm_effects).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

CONFIG = Path(__file__).resolve().parents[1] / "studies" / "configs" / "known_answer.yaml"
ARM = "demographics"  # the arm both planted truths are about
TRUTHS = ("benefit", "null")  # with the config's age shortcut; with none


def known_answer_config(seed: int, storage: str | os.PathLike, records: int | None = None,
                        age_shortcut: float | None = None):
    """The shipped known-answer config with the benchmark's (and the search's) seed set to
    `seed`, and optionally another record count or shortcut strength (0: the planted null)."""
    from heartbeatai.study.study_config import load_study_config, parse_study_config

    raw = load_study_config(CONFIG).model_dump(mode="json", exclude_none=True)
    raw["data"]["synthetic"]["seed"] = seed
    raw["search_seed"] = 1000 + seed  # a search of its own per repeat, never one of the arm seeds
    if records is not None:
        raw["data"]["synthetic"]["records"] = records
    if age_shortcut is not None:
        raw["data"]["synthetic"]["age_shortcut"] = age_shortcut
    raw["storage"] = str(storage)
    return parse_study_config(raw, f"{CONFIG.name} (seed {seed})")


def run_known_answer(seed: int, workdir: Path, records: int | None = None, progress=lambda _: None,
                     age_shortcut: float | None = None) -> pd.DataFrame:
    """Run the known-answer study at `seed` in-process; its ablation_tests rows."""
    from heartbeatai.results import ResultsStore
    from heartbeatai.study.study_run import start_study
    from heartbeatai.testing.fake_stage_runner import FakeStageRunner

    config = known_answer_config(seed, workdir / "runs", records, age_shortcut)
    start_study(config, progress=progress, stage_runner=FakeStageRunner(workdir / "fake"))
    return ResultsStore(str(workdir / "runs")).read(config.name, "ablation_tests")


def verdict(tests: pd.DataFrame, metric: str, truth: str) -> dict:
    """Whether a planted truth was recovered, by the study's own decision on the across-fold row
    of `metric` (arm - full, positive when the arm is better): the benefit when the arm is
    decided "worse", the null unless it is decided "better"."""
    across = tests[(tests["scope"] == "across") & (tests["metric"] == metric)].set_index("arm").loc[ARM]
    decision = str(across["decision"])
    recovered = decision == "worse" if truth == "benefit" else decision != "better"
    return {"recovered": recovered, "decision": decision, "diff": float(across["diff"]),
            "interval": (float(across["diff_lo"]), float(across["diff_hi"])),
            "p_better": float(across["p_better"]), "p_worse": float(across["p_worse"])}


def _effect_size(args) -> int:
    import torch

    from benchmarks.synth_probes import arm_effects
    from heartbeatai.config import TrialConfig

    torch.set_num_threads(1)
    config = known_answer_config(args.first_seed, "unused", args.records)
    spec = config.data.synthetic
    base = TrialConfig.model_validate(config.trial)
    if args.epochs:
        base = base.with_overrides({"optim.epochs": args.epochs})
    arms = {arm.name: dict(arm.overrides) for arm in config.fold_arms("lodo")}  # the arms registry's overrides
    if args.arms:
        arms = {name: overrides for name, overrides in arms.items() if name in {"full", *args.arms.split(",")}}
    seeds = tuple(int(s) for s in args.seeds.split(","))
    strengths = args.age_shortcut or [spec.age_shortcut]
    print(f"{CONFIG.name} arms outside the study: {spec.records} records, shift {spec.shift} ({spec.shift_kinds}), "
          f"{base.optim.epochs} epochs, seeds {seeds}, age shortcut {strengths}; {os.cpu_count()} CPU(s), "
          f"torch {torch.__version__}")
    full_rows = None
    for strength in strengths:
        started = time.perf_counter()
        # `full` never reads age and the shortcut moves nothing else (shortcut.py; the records'
        # signals and labels are identical at every strength), so it is trained once.
        todo = arms if full_rows is None else {k: v for k, v in arms.items() if k != "full"}
        rows = arm_effects(spec.records, todo, shift=spec.shift, shift_kinds=tuple(spec.shift_kinds or ()) or None,
                           trial_config=base, seeds=seeds, seed=spec.seed, age_shortcut=strength)
        full_rows = rows[rows["arm"] == "full"] if full_rows is None else full_rows
        rows = pd.concat([full_rows, rows[rows["arm"] != "full"]], ignore_index=True)
        diffs = rows.pivot_table(index=["fold_id", "seed"], columns="arm", values="macro_auroc")
        diffs = diffs.drop(columns="full").sub(diffs["full"], axis=0)
        means = diffs.groupby("fold_id").mean()
        print(f"age shortcut {strength:g} ({time.perf_counter() - started:.0f} s): arm - full, macro AUROC "
              f"averaged over seeds, per held-out domain")
        for fold, row in means.iterrows():
            print(f"  {fold:14s} " + "  ".join(f"{arm} {value:+.4f}" for arm, value in row.items()))
        print("  mean over domains " + "  ".join(f"{arm} {diffs[arm].mean():+.4f} (seed x domain SD "
                                                 f"{diffs[arm].std(ddof=1):.4f})" for arm in diffs.columns))
    return 0


def _age_weights(args) -> int:
    """Does the demographics arm read the recorded age? One model on one LODO fold at the given
    shortcut strength: the classifier's age weight times the age input's SD (its reach in
    logits) beside the signal features' weights, and how well age alone ranks each class in
    the training records."""
    import tempfile

    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from benchmarks.synth_probes import _train_and_predict
    from heartbeatai.config import TrialConfig
    from heartbeatai.data.folds import fold_records, read_folds, write_folds
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.prepared import PreparedDataset
    from heartbeatai.data.synthetic import write_benchmark
    from heartbeatai.labels import scored_vocabulary
    from heartbeatai.training.predict import load_trained_model

    torch.set_num_threads(1)
    config = known_answer_config(args.first_seed, "unused", args.records)
    spec, fold = config.data.synthetic, f"lodo:{args.fold}"
    trial = TrialConfig.model_validate(config.trial).with_overrides({**config.user_arms[ARM], "seed": 1})
    classes = scored_vocabulary().abbrs
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = write_benchmark(tmp / "raw", spec.records, shift=spec.shift, shift_kinds=tuple(spec.shift_kinds or ()) or None,
                              fs=spec.fs, seconds=spec.seconds, seed=spec.seed, age_shortcut=args.age_weights)
        prepare([raw], tmp / "prep", PrepareSettings(fs=spec.fs, max_seconds=spec.seconds), workers=1, progress=False)
        write_folds(tmp / "prep", "lodo")
        split = fold_records(read_folds(tmp / "prep", "lodo")[0], fold)
        _train_and_predict(tmp / "prep", fold, classes, trial, tmp / "run", split["test"])
        weights = load_trained_model(tmp / "run" / fold.replace(":", "_"), torch.device("cpu")).model.classifier.weight
        weights = weights.detach().numpy()
        dataset = PreparedDataset(tmp / "prep")
        rows = dataset.index_of(split["train"])
        age, labels = dataset.demographics()[rows, 0], dataset.labels(classes)[rows]
    reach = np.abs(weights[:, -3]) * age.std()  # demographics are the classifier's last 3 inputs
    ranked = [max(a, 1 - a) for a in (roc_auc_score(labels[:, j], age) for j in range(len(classes))
                                      if 10 <= labels[:, j].sum() <= len(labels) - 10)]
    print(f"{fold}, age shortcut {args.age_weights:g}, {spec.records} records: the age input's reach "
          f"|w| x SD per class, median {np.median(reach):.3f}, max {reach.max():.3f} logits; the signal "
          f"features' median |w| {np.median(np.abs(weights[:, :-3])):.3f}; age alone ranks the classes in the "
          f"training records at AUROC median {np.median(ranked):.2f}, max {max(ranked):.2f}")
    return 0


def _strengths(text: str) -> list[float]:
    """`--age-shortcut 0,0.5,1`: each strength within the knob's [0, 1], refused in one line."""
    try:
        strengths = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers, got {text!r}") from None
    if not all(0 <= x <= 1 for x in strengths):
        raise argparse.ArgumentTypeError(f"each strength within [0, 1] (data/synthetic/shortcut.py), got {text!r}")
    return strengths


def _stage_lines(message: str) -> None:
    """The study's progress, one line per stage (not per trial)."""
    if any(key in message for key in ("] search:", "] arms:", "analysis:", "ablation tests:")):
        print(f"  {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks known_answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="benchmark seeds (default 5)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--records", type=int, default=None, help="default: the config's")
    parser.add_argument("--metric", default="macro_auroc")
    parser.add_argument("--effect-size", action="store_true",
                        help="train every arm on every LODO fold outside the study and print arm - full")
    parser.add_argument("--seeds", default="1,2", help="--effect-size: training seeds")
    parser.add_argument("--epochs", type=int, default=None, help="--effect-size: default the config's")
    parser.add_argument("--arms", default=None, help="--effect-size: these arms (comma-separated) beside full")
    parser.add_argument("--age-shortcut", type=_strengths, default=None,
                        help="--effect-size: comma-separated strengths, 0-1 (default the config's)")
    parser.add_argument("--age-weights", type=lambda text: _strengths(text)[0], default=None, metavar="STRENGTH",
                        help="train the demographics arm on one LODO fold (--fold) at this shortcut strength and "
                             "print how much its classifier reads age")
    parser.add_argument("--fold", default="chapman", help="--age-weights: the held-out domain")
    args = parser.parse_args(argv)
    if args.effect_size:
        return _effect_size(args)
    if args.age_weights is not None:
        return _age_weights(args)

    import torch

    from heartbeatai.study.study_config import load_study_config

    torch.set_num_threads(1)
    shipped = load_study_config(CONFIG)
    strength = shipped.data.synthetic.age_shortcut
    print(f"{CONFIG.name}: {args.repeats} repeat(s) x (age shortcut {strength:g}, and 0), "
          f"{args.records or shipped.data.synthetic.records} records, metric {args.metric}, decision probability "
          f"{shipped.analysis.decision_probability}, ROPE {shipped.analysis.rope}; {os.cpu_count()} CPU(s), "
          f"torch {torch.__version__}")
    recovered = dict.fromkeys(TRUTHS, 0)
    for seed in range(args.first_seed, args.first_seed + args.repeats):
        for truth, shortcut in zip(TRUTHS, (strength, 0.0)):
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="known-answer-") as tmp:
                tests = run_known_answer(seed, Path(tmp), args.records, progress=_stage_lines, age_shortcut=shortcut)
            folds = tests[(tests["scope"] == "fold") & (tests["metric"] == args.metric) & (tests["arm"] == ARM)]
            result = verdict(tests, args.metric, truth)
            recovered[truth] += result["recovered"]
            print(f"seed {seed}, age shortcut {shortcut:g} ({time.perf_counter() - started:.0f} s): {ARM} - full "
                  f"per held-out domain " + "  ".join(f"{r.fold_id} {r.diff:+.4f}" for r in folds.itertuples()))
            lo, hi = result["interval"]
            print(f"  planted {truth}: {'recovered' if result['recovered'] else 'MISSED'}: decided "
                  f"{result['decision']!r}, across {result['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}], "
                  f"P(better) {result['p_better']:.2f}, P(worse) {result['p_worse']:.2f}", flush=True)
    print(f"planted benefit found (full decided better than {ARM} at age shortcut {strength:g}): "
          f"{recovered['benefit']}/{args.repeats}")
    print(f"planted null kept ({ARM} not decided better without the shortcut): {recovered['null']}/{args.repeats}")
    return 0
