"""`study plan`: the runs a study will make and what they will cost, from its config alone.

Nothing is generated or started: the fold sizes come from the folds file when the dataset
has one, else from the synthetic spec. The cost is a model, not a measurement of the
study: the base network timed on this machine per record and epoch, ASHA's expected
epochs, and fixed start-up costs of Ray, Tune and a trial measured on the development
machine; a tiny model's study is mostly the latter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from heartbeatai.protocols import INTRA, LODO, REFERENCE
from heartbeatai.protocols import fold_id as make_fold_id  # `fold_id` names the loop variable below
from heartbeatai.study.study_config import StudyConfig
from heartbeatai.study.study_folds import planned_folds


@dataclass(frozen=True)
class FoldPlan:
    protocol: str
    fold_id: str
    search_trials: int  # over every search of the fold
    arm_runs: int  # trained arms x seeds
    train_records: int
    val_records: int
    searches: int = 1  # `full`'s, plus one per algorithm arm (each with `full`'s budget)


# Fixed costs measured on the 2-core development machine (Ray 2.60): a local Ray's start, a
# Tune experiment's set-up and tear-down, a trial's start (a Train worker group plus DDP
# about 15 s, DESIGN.md), and a fold's tests (selected, oracle and arm checkpoints).
RAY_START_S = 10.0
EXPERIMENT_S = 8.0
TRIAL_START_S = {"in_process": 4.0, "worker_group": 15.0}
FOLD_TEST_S = 10.0


@dataclass(frozen=True)
class StudyPlan:
    study_dir: Path
    folds: list[FoldPlan]
    epochs: int
    search_epochs: float  # epochs one search of a fold spends, with ASHA's early stopping
    cpus: float
    cost: "RecordCost"

    def training_seconds(self) -> float:
        """CPU-seconds of training and validation spread over the CPUs."""
        cpu_seconds = sum(
            (self.search_epochs * f.searches + f.arm_runs * self.epochs)
            * (f.train_records * self.cost.train_s + f.val_records * self.cost.eval_s)
            for f in self.folds
        )
        return cpu_seconds / self.cpus

    def overhead_seconds(self, concurrent: int, worker_group: bool) -> float:
        """Ray, Tune and trial start-up, plus testing: what a tiny model's study mostly spends."""
        trial = TRIAL_START_S["worker_group" if worker_group else "in_process"]
        runs = sum(f.search_trials + f.arm_runs for f in self.folds)
        stages = sum(f.searches + (1 if f.arm_runs else 0) for f in self.folds)
        return RAY_START_S + stages * EXPERIMENT_S + runs * trial / concurrent + len(self.folds) * FOLD_TEST_S


@dataclass(frozen=True)
class RecordCost:
    """CPU-seconds per record and epoch: a training crop's step, a validation record's windows,
    timed at `threads` torch threads (wall time x threads)."""

    train_s: float
    eval_s: float
    threads: int = 1


def asha_expected_epochs(trials: int, max_t: int, grace: int, eta: float) -> float:
    """Epochs a synchronous successive-halving bracket spends: 1/eta of the trials pass each rung."""
    rungs = [grace]
    while rungs[-1] * eta < max_t:
        rungs.append(int(math.ceil(rungs[-1] * eta)))
    rungs.append(max_t)
    spent, previous = 0.0, 0
    for i, milestone in enumerate(rungs):
        spent += (milestone - previous) * eta ** -i
        previous = milestone
    return trials * spent


def plan_study(config: StudyConfig, storage: str | None, cost: RecordCost, cpus: float) -> StudyPlan:
    """The runs a study will make, from its config alone (nothing is generated or started)."""
    folds = []
    for protocol in config.protocols:
        for fold_id, n_train, n_val in _planned_fold_sizes(config, protocol):
            arms = config.fold_arms(protocol)
            searches = 1 + sum(a.algorithm is not None for a in arms)
            folds.append(FoldPlan(protocol, fold_id, config.search.trials_per_fold * searches,
                                  sum(a.trained for a in arms) * len(config.seeds), n_train, n_val, searches))
    epochs = config.trial.optim.epochs
    sched = config.scheduler
    per_fold = (asha_expected_epochs(config.search.trials_per_fold, epochs, sched.grace_period, sched.reduction_factor)
                if sched.kind == "asha" else config.search.trials_per_fold * epochs)
    return StudyPlan(Path(config.study_dir(storage)), folds, epochs, per_fold, cpus, cost)


def _planned_fold_sizes(config: StudyConfig, protocol: str) -> list[tuple[str, int, int]]:
    """(fold id, train records, val records): from the folds file when there is one, else from the spec."""
    from heartbeatai.data.folds import folds_path, read_folds
    from heartbeatai.data.prepared import RECORDS_FILE

    val = config.folds.val_fraction or 0.15
    if config.data.path is not None and folds_path(config.data.path, protocol).is_file():
        table, _ = read_folds(config.data.path, protocol)
        sizes = table.groupby(["fold_id", "split"]).size().unstack(fill_value=0)
        return [(f, int(sizes.loc[f].get("train", 0)), int(sizes.loc[f].get("val", 0)))
                for f in planned_folds(config, Path(config.data.path), protocol)]
    if config.data.path is not None:
        records = pd.read_parquet(Path(config.data.path) / RECORDS_FILE, columns=["domain"])
        per_domain = records["domain"].value_counts().to_dict()
    else:
        spec = config.data.synthetic
        per_domain = {d: spec.records / len(spec.domains) for d in spec.domains}
    domains = [d for d in per_domain if config.folds.domains is None or d in config.folds.domains]
    total = sum(per_domain.values())
    lodo = {d: (int((total - per_domain[d]) * (1 - val)), int((total - per_domain[d]) * val)) for d in domains}
    if protocol == LODO:
        return [(make_fold_id(LODO, d), *lodo[d]) for d in sorted(domains)]
    k = config.folds.k or 5
    used = min(k, config.folds.parts_per_domain(protocol) or k)
    if protocol == REFERENCE:  # LODO's sizes, drawn from every domain (data/folds.py)
        return [(make_fold_id(REFERENCE, d, i), *lodo[d]) for d in sorted(domains) for i in range(used)]
    return [(make_fold_id(INTRA, d, i), int(per_domain[d] * (k - 1) / k * (1 - val)),
             int(per_domain[d] * (k - 1) / k * val)) for d in sorted(domains) for i in range(used)]


def trial_threads(config: StudyConfig) -> int:
    """The torch threads one trial worker runs with: Ray sets them from the CPUs it is given."""
    cpus = config.resources.cpus_per_worker
    return max(1, int(cpus)) if cpus is not None else 1


def calibrate_record_cost(config: StudyConfig, fs: int, repeats: int = 3, threads: int = 1) -> RecordCost:
    """Time the study's base model on this machine at `threads` torch threads (by default one, as
    a one-CPU trial runs): a training step per crop, and a forward pass per validation window
    (records of 10 s, windows every eval_stride_seconds)."""
    import time

    import torch

    from heartbeatai.training.factory import model_from_config

    cfg = config.trial
    samples = int(cfg.preprocess.crop_seconds * fs)
    batch = min(cfg.optim.batch_size, 16)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model_from_config(cfg, len(config.classes) if config.classes else 26)
        x = torch.randn(batch, 12, samples)

        def best_of(step: Callable[[], object]) -> float:
            timings = []
            for _ in range(repeats + 1):  # the first call warms up allocators
                start = time.perf_counter()
                step()
                timings.append(time.perf_counter() - start)
            return min(timings[1:]) / batch

        train_s = best_of(lambda: model(x).sum().backward())
        model.eval()
        with torch.no_grad():
            forward_s = best_of(lambda: model(x))
    finally:
        torch.set_num_threads(previous)
    windows = max(1.0, 1 + (10.0 - cfg.preprocess.crop_seconds) / cfg.preprocess.eval_stride_seconds)
    return RecordCost(train_s=train_s * threads, eval_s=forward_s * windows * threads, threads=threads)
