"""Study speed on the synthetic benchmark: how much of the machine the trials use, and what ASHA + TPE saves.

1. Efficiency: a 16-trial search (Tune + Optuna TPE + ASHA, in-process trials) on one LODO
   fold. The share of the search's wall time x CPUs spent inside training and validation
   epochs (the loop's own `epoch_seconds`, summed over every trial process), i.e. what Ray,
   Tune, checkpoints and trial start-up leave. Target >= 90%.
2. Search: over repetitions, a full-budget random search of N trials (every trial to the
   last epoch) against ASHA + TPE with the same N. The compute (epochs, in the order results
   arrived) ASHA + TPE spends before its best validation metric comes within 0.005 of the
   random search's best, as a share of the random search's compute. Target <= 1/3; a
   repetition that never gets there is reported as such.

    python -m benchmarks study [--quick] [--repetitions 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

EFFICIENCY_TARGET = 0.90
SEARCH_TARGET = 1 / 3
TOLERANCE = 0.005


def _study_config(name: str, storage: Path, records: int, epochs: int, trials: int, widths: list[int]):
    from heartbeatai.ecg import PAPER_DOMAINS
    from heartbeatai.study.study_config import parse_study_config

    return parse_study_config({
        "name": name,
        "data": {"synthetic": {"records": records, "domains": list(PAPER_DOMAINS),
                               "fs": 100, "seconds": 10, "seed": 0}},
        "folds": {"domains": ["georgia"]},
        "trial": {
            "model": {"stem_width": widths[0], "widths": widths, "depths": [1] * len(widths), "stem_kernel": 7,
                      "kernel": 5, "se_reduction": 4, "concentration_stages": list(range(1, len(widths)))},
            "mixstyle": {"layers": list(range(1, len(widths)))},
            "preprocess": {"crop_seconds": 5.0, "eval_stride_seconds": 2.5},
            "optim": {"lr": 0.005, "epochs": epochs, "batch_size": 32},
        },
        "search": {"trials_per_fold": trials},
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "search_seed": 0,
        "seeds": [1],
        "arms": ["full"],
        "storage": str(storage),
    })


def _fold_runner(config, storage: Path):
    from heartbeatai.study.study_run import StudyPaths, fold_runners

    paths = StudyPaths((storage / config.name).resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    (runner,) = list(fold_runners(config, paths, progress=lambda m: print(f"  {m}", flush=True)))
    return runner


def _search(runner, name: str, sampler, use_asha: bool, trials: int):
    """One Tune experiment on the runner's fold; returns (ResultGrid, wall seconds)."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from heartbeatai.study.search_space import optuna_space
    from heartbeatai.study.trial_rows import TrialRows
    from heartbeatai.study.tune_runner import TrialRowsCallback, TuneStage, run_stage

    tune_runner = runner.study.stage_runner
    context = runner.context(runner.base)
    epochs = runner.base.optim.epochs
    search = OptunaSearch(optuna_space(runner.config.search.space), metric=context.metric, mode=context.mode,
                          sampler=sampler, study_name=f"{runner.fold_id}-{name}",
                          storage=optuna.storages.RDBStorage(runner.study.optuna_storage))
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=1, reduction_factor=2)
                 if use_asha else FIFOScheduler())
    rows = TrialRows(context, str(runner.study.root), stage_arm="search", selection="search")
    started = time.perf_counter()
    grid = run_stage(TuneStage(name, {}, trials, search, scheduler), context, tune_runner.launch,
                     tune_runner.experiment_root, tune_runner.concurrent, [TrialRowsCallback(rows)])
    return grid, time.perf_counter() - started


def _epoch_rows(grid):
    import pandas as pd

    frames = [r.metrics_dataframe.assign(trial=i) for i, r in enumerate(grid) if r.metrics_dataframe is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def efficiency(storage: Path, quick: bool) -> float:
    import optuna

    config = _study_config("bench-efficiency", storage, records=400 if quick else 1600, epochs=3 if quick else 6,
                           trials=16, widths=[16, 32, 64] if quick else [32, 64, 128])
    runner = _fold_runner(config, storage)
    grid, wall = _search(runner, "efficiency", optuna.samplers.TPESampler(seed=0), use_asha=True, trials=16)
    rows = _epoch_rows(grid)
    trial_cpus = runner.study.stage_runner.launch.resources.total()["CPU"]
    cpus = trial_cpus * runner.study.stage_runner.concurrent  # the CPUs the trials could use
    inside = float(rows["epoch_seconds"].sum()) * trial_cpus
    share = inside / (wall * cpus)
    print(f"efficiency: {len(grid)} trials, {len(rows)} epochs in {wall:.1f} s wall on {cpus:g} CPUs; "
          f"inside training/validation epochs {inside:.1f} CPU-s = {share:.1%} of wall x CPUs "
          f"(target >= {EFFICIENCY_TARGET:.0%})", flush=True)
    return share


def search_savings(storage: Path, repetitions: int, trials: int, epochs: int) -> list[float | None]:
    import optuna

    ratios: list[float | None] = []
    for rep in range(repetitions):
        config = _study_config(f"bench-search-{rep}", storage, records=400, epochs=epochs, trials=trials,
                               widths=[16, 32, 64])
        runner = _fold_runner(config, storage)
        random_grid, _ = _search(runner, f"random-{rep}", optuna.samplers.RandomSampler(seed=rep), False, trials)
        asha_grid, _ = _search(runner, f"asha-tpe-{rep}", optuna.samplers.TPESampler(seed=rep), True, trials)
        random_rows, asha_rows = _epoch_rows(random_grid), _epoch_rows(asha_grid)
        metric = runner.config.selection.metric
        target = float(random_rows[metric].max()) - TOLERANCE
        budget = len(random_rows)  # epochs of the full-budget random search
        arrived = asha_rows.sort_values("timestamp", kind="stable").reset_index(drop=True)
        reached = arrived.index[arrived[metric].cummax() >= target]
        ratio = (int(reached[0]) + 1) / budget if len(reached) else None
        ratios.append(ratio)
        told = f"{ratio:.2f} of its compute ({int(reached[0]) + 1} of {budget} epochs)" if ratio is not None \
            else f"never (best {arrived[metric].max():.4f}, spent {len(arrived)} of {budget} epochs)"
        print(f"search repetition {rep}: random best {target + TOLERANCE:.4f}; ASHA+TPE within {TOLERANCE} "
              f"after {told}", flush=True)
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller data and models, one search repetition")
    parser.add_argument("--repetitions", type=int, help="search repetitions (default 3, quick 1)")
    parser.add_argument("--keep", type=Path, help="keep the benchmark studies under this folder")
    args = parser.parse_args(argv)

    from heartbeatai.study.ray_start import prefer_loopback

    prefer_loopback()
    import ray

    storage = args.keep or Path(tempfile.mkdtemp(prefix="bench-study-"))
    ray.init(num_cpus=int(os.environ.get("BENCH_CPUS", 2)), log_to_driver=False)
    try:
        share = efficiency(storage, args.quick)
        repetitions = args.repetitions or (1 if args.quick else 3)
        ratios = search_savings(storage, repetitions, trials=16, epochs=4 if args.quick else 8)
    finally:
        ray.shutdown()
        if args.keep is None:
            shutil.rmtree(storage, ignore_errors=True)
    reached = [r for r in ratios if r is not None]
    print(f"summary: efficiency {share:.1%} (target >= {EFFICIENCY_TARGET:.0%}); ASHA+TPE compute to match "
          f"random search: {', '.join(f'{r:.2f}' if r is not None else 'never' for r in ratios)} "
          f"(target <= {SEARCH_TARGET:.2f}; met in {sum(r <= SEARCH_TARGET for r in reached)} of {len(ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
