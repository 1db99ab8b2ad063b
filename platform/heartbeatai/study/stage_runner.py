"""What a fold asks of whoever runs its trials: the seam between study policy and Ray Tune.

The fold runner decides which stages run, in which order, with which configurations, and
what their rows mean; a stage runner only trains the trials of one stage and hands every
report to a `TrialRows` (trial_rows.py), which writes the trials and epochs tables. Ray
Tune is one stage runner (tune_runner.TuneStageRunner); `heartbeatai.testing.
fake_stage_runner` is another that runs the same training loop in the calling process, so
the journal, resume, sealed-split, selection and arms policy is tested without Ray.

Everything here is plain values: Ray ships a FoldContext to every trial process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Union

from heartbeatai.arms import SEARCH
from heartbeatai.config import TrialConfig
from heartbeatai.study.search_space import Distribution

if TYPE_CHECKING:
    from heartbeatai.study.trial_rows import TrialRows

# Keys of a stage's trial config (Tune's `config`) that are not trial-config overrides.
ARM_KEY, SEED_KEY = "arm", "seed"


@dataclass(frozen=True)
class FoldContext:
    """Everything a trial of one fold needs: its data, classes, base configuration and metric."""

    study: str
    protocol: str
    fold_id: str
    data_path: str
    classes: tuple[str, ...]
    base_trial: TrialConfig
    metric: str
    mode: str
    arm_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # An algorithm arm retrains from its own search's selection, not from `base_trial` (`full`'s).
    arm_bases: Mapping[str, TrialConfig] = field(default_factory=dict)

    @property
    def optuna_study_name(self) -> str:
        """Unique within any shared Optuna RDB: `<study>/<fold>`."""
        return f"{self.study}/{self.fold_id}"

    @property
    def epochs(self) -> int:
        """The full budget of a trial: ASHA's max_t, and what tells completed from early-stopped."""
        return self.base_trial.optim.epochs

    def trial_config(self, stage_config: Mapping[str, Any]) -> TrialConfig:
        """The resolver: the base configuration with the arm's overrides, then sampled values,
        then the seed; the one place a trial's configuration is built from plain values.

        A parameter of another kind than the one in force (a sampled `loss.gamma` while the
        sampled `loss.kind` is bce, an arm's focal parameter on a fold that selected ASL) does
        not act, as in any conditional search space."""
        arm = stage_config.get(ARM_KEY)
        overrides = dict(self.arm_overrides.get(arm, {}))
        overrides.update({k: v for k, v in stage_config.items() if k not in (ARM_KEY, SEED_KEY)})
        if SEED_KEY in stage_config:
            overrides["seed"] = stage_config[SEED_KEY]
        return self.arm_bases.get(arm, self.base_trial).with_overrides(overrides, inactive="drop")


@dataclass(frozen=True)
class SearchStage:
    """The fold's search: seeded Optuna TPE over the space (persisted in an Optuna RDB), with
    ASHA's early stopping on `epoch` when `asha`; every trial runs the base configuration's seed."""

    space: Mapping[str, Distribution]
    trials: int
    sampler_seed: int
    optuna_storage: str
    grace_period: int
    reduction_factor: float
    asha: bool
    one_at_a_time: bool = False  # search.reproducible: no trial's timing can change another's fate
    name: str = "search"
    # Whose search: `full`'s (the arm key "search"), or an algorithm arm's own.
    arm: str = SEARCH

    def optuna_study_name(self, context: FoldContext) -> str:
        """`<study>/<fold>` for `full`'s search, as stores written before algorithm arms have it;
        `<study>/<fold>/<arm>` for an algorithm arm's, so each search keeps its own TPE history."""
        return context.optuna_study_name if self.arm == SEARCH else f"{context.optuna_study_name}/{self.arm}"


@dataclass(frozen=True)
class ArmsStage:
    """Every trained arm for every seed, from the fold's selection, to the full budget."""

    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    name: str = "arms"

    def trial_configs(self) -> list[dict[str, Any]]:
        """One stage config per arm x seed."""
        return [{ARM_KEY: arm, SEED_KEY: seed} for arm in self.arms for seed in self.seeds]


Stage = Union[SearchStage, ArmsStage]


def fold_sampler_seed(search_seed: int, fold_id: str) -> int:
    """The Optuna sampler seed of one fold's search: a stable hash of the study's search seed and
    the fold id (not Python's hash(), salted per process), so folds explore different points and
    a rerun repeats them. Only the sampler's: trials still train at the search seed."""
    digest = hashlib.sha256(f"{int(search_seed)}/{fold_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def algorithm_sampler_seed(search_seed: int, fold_id: str, algorithm: str) -> int:
    """The Optuna sampler seed of an algorithm arm's search on one fold: a stable hash of the
    study's search seed, the fold id and the algorithm's registered name, so adding or removing
    an algorithm never moves another's draws (DomainBed #169), and none shares `full`'s
    (fold_sampler_seed, unchanged so that studies written before algorithm arms repeat)."""
    digest = hashlib.sha256(f"{int(search_seed)}/{fold_id}/algorithm/{algorithm}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class StageRunner(Protocol):
    """Trains the trials of one stage of a fold and reports each of them to `rows`.

    `run` returns when every trial of the stage has finished (completed, early-stopped or
    errored); it may raise when the driver is interrupted, and a later call with the same
    stage and context then finishes what is left, without rerunning finished trials.
    """

    concurrent: int  # trials at a time, for the progress line

    def run(self, stage: Stage, context: FoldContext, rows: "TrialRows") -> None: ...
