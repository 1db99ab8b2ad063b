"""Known-answer study: how often the study's own analysis recovers two planted truths.

`studies/configs/known_answer.yaml` is a synthetic study whose answer is known by
construction (docs/synthetic.md, "Known-answer study"):

- a planted style shift, and nothing else, between the domains (equal prevalences, equal
  label noise): the `no-mixstyle` arm must come out worse than `full` across the held-out
  domains (posterior P(full better) >= the decision probability, or an across-fold
  interval of arm - full below zero);
- a planted null: the `demographics` arm feeds age and sex to the classifier, and the
  benchmark draws its labels independently of both, so the arm must not be reported
  better (P(better) below the decision probability, or an interval that covers zero).

Each repeat regenerates the benchmark with another seed and runs the whole study
(search, arms at every arm seed, the analysis) in this process with the real training
loop (heartbeatai.testing.FakeStageRunner: Optuna TPE and ASHA's rule, no Ray), then
reads the ablation_tests table the study wrote. It prints the per-fold differences and
each planted truth's recovery rate.

    python -m benchmarks known_answer [--repeats 3] [--records N] [--metric macro_auroc]

`--effect-size` first checks, outside the study, that the planted effect exists: every arm
of the config trained on every LODO fold at `--seeds` (default 1,2) and `--epochs`, its
macro AUROC against `full`'s per fold (benchmarks/synth_probes.arm_effects).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

CONFIG = Path(__file__).resolve().parents[1] / "studies" / "configs" / "known_answer.yaml"
EFFECT_ARM = "no-mixstyle"
NULL_ARM = "demographics"


def known_answer_config(seed: int, storage: str | os.PathLike, records: int | None = None):
    """The shipped known-answer config with the benchmark's (and the search's) seed set to `seed`."""
    from heartbeatai.study.study_config import load_study_config, parse_study_config

    raw = load_study_config(CONFIG).model_dump(mode="json", exclude_none=True)
    raw["data"]["synthetic"]["seed"] = seed
    if records is not None:
        raw["data"]["synthetic"]["records"] = records
    raw["storage"] = str(storage)
    return parse_study_config(raw, f"{CONFIG.name} (seed {seed})")


def run_known_answer(seed: int, workdir: Path, records: int | None = None, progress=lambda _: None) -> pd.DataFrame:
    """Run the known-answer study at `seed` in-process; its ablation_tests rows."""
    from heartbeatai.results import ResultsStore
    from heartbeatai.study.study_run import start_study
    from heartbeatai.testing.fake_stage_runner import FakeStageRunner

    config = known_answer_config(seed, workdir / "runs", records)
    start_study(config, progress=progress, stage_runner=FakeStageRunner(workdir / "fake"))
    return ResultsStore(str(workdir / "runs")).read(config.name, "ablation_tests")


def verdicts(tests: pd.DataFrame, metric: str, probability: float) -> dict[str, dict]:
    """Whether each planted truth was recovered, from the across-fold rows of `metric`."""
    across = tests[(tests["scope"] == "across") & (tests["metric"] == metric)].set_index("arm")
    effect, null = across.loc[EFFECT_ARM], across.loc[NULL_ARM]
    return {
        EFFECT_ARM: {"recovered": bool(effect["p_worse"] >= probability or effect["diff_hi"] < 0),
                     "diff": float(effect["diff"]), "p_full_better": float(effect["p_worse"]),
                     "interval": (float(effect["diff_lo"]), float(effect["diff_hi"]))},
        NULL_ARM: {"recovered": bool(null["p_better"] < probability or null["diff_lo"] <= 0 <= null["diff_hi"]),
                   "diff": float(null["diff"]), "p_better": float(null["p_better"]),
                   "interval": (float(null["diff_lo"]), float(null["diff_hi"]))},
    }


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
    strengths = [float(x) for x in args.age_shortcut.split(",")] if args.age_shortcut else [spec.age_shortcut]
    print(f"{CONFIG.name} arms outside the study: {spec.records} records, shift {spec.shift} ({spec.shift_kinds}), "
          f"{base.optim.epochs} epochs, seeds {seeds}, age shortcut {strengths} SD; {os.cpu_count()} CPU(s), "
          f"torch {torch.__version__}")
    for strength in strengths:
        started = time.perf_counter()
        rows = arm_effects(spec.records, arms, shift=spec.shift, shift_kinds=tuple(spec.shift_kinds or ()) or None,
                           trial_config=base, seeds=seeds, seed=spec.seed, age_shortcut=strength)
        diffs = rows.pivot_table(index=["fold_id", "seed"], columns="arm", values="macro_auroc")
        diffs = diffs.drop(columns="full").sub(diffs["full"], axis=0)
        means = diffs.groupby("fold_id").mean()
        print(f"age shortcut {strength:g} SD ({time.perf_counter() - started:.0f} s): arm - full, macro AUROC "
              f"averaged over seeds, per held-out domain")
        for fold, row in means.iterrows():
            print(f"  {fold:14s} " + "  ".join(f"{arm} {value:+.4f}" for arm, value in row.items()))
        print("  mean over domains " + "  ".join(f"{arm} {diffs[arm].mean():+.4f} (seed x domain SD "
                                                 f"{diffs[arm].std(ddof=1):.4f})" for arm in diffs.columns))
    return 0


def _stage_lines(message: str) -> None:
    """The study's progress, one line per stage (not per trial)."""
    if any(key in message for key in ("] search:", "] arms:", "analysis:", "ablation tests:")):
        print(f"  {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks known_answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="benchmark seeds (default 3)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--records", type=int, default=None, help="default: the config's")
    parser.add_argument("--metric", default="macro_auroc")
    parser.add_argument("--effect-size", action="store_true",
                        help="train every arm on every LODO fold outside the study and print arm - full")
    parser.add_argument("--seeds", default="1,2", help="--effect-size: training seeds")
    parser.add_argument("--epochs", type=int, default=None, help="--effect-size: default the config's")
    parser.add_argument("--arms", default=None, help="--effect-size: these arms (comma-separated) beside full")
    parser.add_argument("--age-shortcut", default=None,
                        help="--effect-size: comma-separated strengths in age SDs (default the config's)")
    args = parser.parse_args(argv)
    if args.effect_size:
        return _effect_size(args)

    import torch

    from heartbeatai.study.study_config import load_study_config

    torch.set_num_threads(1)
    shipped = load_study_config(CONFIG)
    probability = shipped.analysis.decision_probability
    print(f"{CONFIG.name}: {args.repeats} repeat(s), {args.records or shipped.data.synthetic.records} records, "
          f"metric {args.metric}, decision probability {probability}, ROPE {shipped.analysis.rope}; "
          f"{os.cpu_count()} CPU(s), torch {torch.__version__}")
    recovered = {EFFECT_ARM: 0, NULL_ARM: 0}
    for seed in range(args.first_seed, args.first_seed + args.repeats):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="known-answer-") as tmp:
            tests = run_known_answer(seed, Path(tmp), args.records, progress=_stage_lines)
        folds = tests[(tests["scope"] == "fold") & (tests["metric"] == args.metric)]
        per_fold = folds.pivot_table(index="fold_id", columns="arm", values="diff")
        result = verdicts(tests, args.metric, probability)
        print(f"seed {seed} ({time.perf_counter() - started:.0f} s): arm - full per held-out domain")
        for fold, row in per_fold.iterrows():
            print(f"  {fold:14s} " + "  ".join(f"{arm} {row[arm]:+.4f}" for arm in per_fold.columns))
        for arm, verdict in result.items():
            recovered[arm] += verdict["recovered"]
            shown = {k: (round(v, 4) if isinstance(v, float) else tuple(round(x, 4) for x in v))
                     for k, v in verdict.items() if k != "recovered"}
            print(f"  {arm}: {'recovered' if verdict['recovered'] else 'MISSED'} {shown}")
    print(f"planted MixStyle benefit detected (full better than {EFFECT_ARM}): {recovered[EFFECT_ARM]}/{args.repeats}")
    print(f"planted null kept ({NULL_ARM} not reported better): {recovered[NULL_ARM]}/{args.repeats}")
    return 0
