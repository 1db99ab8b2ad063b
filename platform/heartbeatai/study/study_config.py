"""The study configuration: one YAML file validated into one typed object (DESIGN.md, Study).

Validation happens here, at the boundary; everything downstream takes plain, already
checked values. Errors name the offending key as a dotted path (``search.space.mixstyle.p``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from heartbeatai.config import (
    ConfigError, TrialConfig, describe_validation_error, did_you_mean, load_validated_yaml, trial_keys,
)
from heartbeatai.arms import (
    ALGORITHM_ARM_PREFIX, BUILTIN_ARMS, DEFAULT_ARMS, FULL, Arm, canonical_arm, resolve_arms,
)
from heartbeatai.ecg import PAPER_DOMAINS
from heartbeatai.metric_names import (
    DEFAULT_SELECTION_METRIC, THRESHOLD_DEPENDENT, VALIDATION_METRICS, fold_metric_of, metric_mode,
)
from heartbeatai.protocols import ARM_PROTOCOLS, LODO, PROTOCOLS
from heartbeatai.run_file import RunFile
from heartbeatai.study.search_space import DEFAULT_SPACE, Distribution
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM

Protocol = Literal[PROTOCOLS]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticData(_Strict):
    """Arguments of heartbeatai.data.synthetic.write_benchmark, plus the rate to prepare at."""

    records: int = Field(gt=0)
    domains: list[str] = Field(default_factory=lambda: list(PAPER_DOMAINS), min_length=2)
    shift: float = Field(default=1.0, ge=0.0)
    shift_kinds: list[Literal["style", "prevalence", "label_noise"]] | None = None
    fs: int = Field(default=100, gt=0)
    seconds: float = Field(default=10.0, gt=0.0)
    seed: int = 0
    age_shortcut: float = Field(default=0.0, ge=0.0, le=1.0)  # 0-1; data/synthetic/shortcut.py
    rate_overlap: float = Field(default=0.0, ge=0.0)  # bpm; data/synthetic/rhythm.py, rate_range
    acquisition_shortcut: float = Field(default=0.0, ge=0.0, le=1.0)  # 0-1; data/synthetic/device_mark.py

    def fingerprint(self) -> str:
        """Stable hash of the spec: generated data is cached under it and reused."""
        # A knob left at 0 hashes as it did before the field existed: the spec's cache stays valid.
        off = {knob for knob in ("age_shortcut", "rate_overlap", "acquisition_shortcut") if not getattr(self, knob)}
        spec = self.model_dump(mode="json", exclude=off or None)
        # The construction: an age-SD shift or one-hospital bands cached before are other benchmarks.
        if self.age_shortcut:
            spec["age_shortcut_construction"] = "split-bands"
        blob = json.dumps(spec, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class DataConfig(_Strict):
    """Either a prepared dataset on disk or a synthetic spec generated on first use."""

    path: str | None = None
    synthetic: SyntheticData | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "DataConfig":
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of data.path (a prepared dataset) or data.synthetic")
        return self


class FoldsConfig(_Strict):
    """Which folds to run. Fold parameters are written once into the folds file (DESIGN.md, Folds):
    a study plans the folds when the dataset has none; given parameters must match an existing
    file, left out they take the file's (or, when planning, 5 / 0.15 / 0)."""

    domains: list[str] | None = None  # None: every domain of the dataset
    k: int | None = Field(default=None, ge=2)
    val_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    seed: int | None = None
    # Intra-source folds per domain actually run (k folds are planned; running all k per
    # domain multiplies the study's cost by k, which a laptop study cannot afford).
    intra_per_domain: int | None = Field(default=None, ge=1)
    # Reference folds per held-out domain actually run (each trains on LODO's amount of data;
    # the degradation split pairs LODO with the parts that ran, on their records).
    reference_per_domain: int | None = Field(default=None, ge=1)

    def parts_per_domain(self, protocol: str) -> int | None:
        """How many of a domain's k parts the study runs for a cross-fitted protocol (None: all)."""
        return {"intra": self.intra_per_domain, "reference": self.reference_per_domain}.get(protocol)


class SearchConfig(_Strict):
    space: dict[str, Distribution] = Field(default_factory=lambda: dict(DEFAULT_SPACE))
    trials_per_fold: int = Field(default=16, ge=1)
    # One search trial at a time: TPE then always proposes from the same finished trials and
    # ASHA judges each rung in the same order, so a rerun (or a resume) repeats the search
    # exactly, at the cost of concurrency (docs/extending.md, Reproducible searches).
    reproducible: bool = False


class SchedulerConfig(_Strict):
    """ASHA on the reported `epoch` (a restored Tune trial restarts training_iteration)."""

    kind: Literal["asha", "none"] = "asha"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3.0, gt=1.0)


class AlgorithmArmConfig(_Strict):
    """What one algorithm arm changes beyond `algorithm.kind`, where its algorithm needs it:
    MixStyle's parameters live in the trial's `mixstyle` section (so `full` and the `no-mixstyle`
    arm keep their meaning) and it refuses `mixstyle.p: 0`, which a zoo's ERM reference sets."""

    overrides: dict[str, Any] = Field(default_factory=dict)  # of `full`'s base, for this arm's search
    space: dict[str, Distribution] = Field(default_factory=dict)  # searched beside its declared parameters


class ResourcesConfig(_Strict):
    workers: int = Field(default=1, ge=1)
    gpus_per_worker: float = Field(default=0.0, ge=0.0)
    # None: one CPU for an in-process trial; for Ray Train workers, (available - 0.01) / workers.
    cpus_per_worker: float | None = Field(default=None, gt=0.0)


class SelectionConfig(_Strict):
    metric: str = DEFAULT_SELECTION_METRIC
    # Which way the metric improves: derived from the metric registry; given, it must agree.
    mode: Literal["max", "min"]
    method: Literal["val"] = "val"
    # The test-domain oracle: an upper bound only, computed after the selected model is tested.
    oracle: bool = True

    @model_validator(mode="before")
    @classmethod
    def _mode_from_metric(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("mode") is None:
            metric = raw.get("metric", DEFAULT_SELECTION_METRIC)
            if metric in VALIDATION_METRICS:
                return {**raw, "mode": metric_mode(metric)}
            return {**raw, "mode": "max"}  # the metric check below names the real problem
        return raw

    @model_validator(mode="after")
    def _recorded_metric(self) -> "SelectionConfig":
        if self.metric not in VALIDATION_METRICS:
            raise ValueError(f"metric: {self.metric!r} is not recorded per epoch"
                             f"{did_you_mean(self.metric, VALIDATION_METRICS)} (choose one of "
                             f"{', '.join(VALIDATION_METRICS)})")
        if self.mode != metric_mode(self.metric):
            raise ValueError(f"mode: {self.metric} improves towards {metric_mode(self.metric)}, not {self.mode}; "
                             "leave mode out to derive it")
        if self.oracle and fold_metric_of(self.metric) is None:
            raise ValueError(f"oracle: {self.metric} has no test-set counterpart to pick the oracle by; "
                             "set selection.oracle: false or select on another metric")
        return self


class AnalysisConfig(_Strict):
    """The study-level analysis (docs/analysis.md); `study analyse` can rerun it with others."""

    bootstrap: int = Field(default=1000, ge=10)  # paired-bootstrap replicates (per-fold tests, parts)
    seed: int = 0  # every resampling derives from it, so a rerun writes identical tables
    rope: float = Field(default=0.01, ge=0.0)  # region of practical equivalence, metric units
    decision_probability: float = Field(default=0.95, gt=0.5, lt=1.0)  # a posterior that decides
    # Below this many test positives an interval is marked unreliable: the smallest count from
    # which every interval method covered >= 0.90 in every scenario of `python -m benchmarks
    # statistics` (500 replicates per cell; 3 counting Monte-Carlo error, 5 without).
    min_positives: int = Field(default=5, ge=1)


class TrackingConfig(_Strict):
    kind: Literal["mlflow"] = "mlflow"
    tracking_uri: str | None = None  # None: MLflow's own default store
    experiment_name: str | None = None  # None: the study name


class StudyConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig
    classes: list[str] | None = None  # abbreviations; None: every class of the dataset
    protocols: list[Protocol] = Field(default_factory=lambda: [LODO], min_length=1)
    folds: FoldsConfig = FoldsConfig()
    trial: TrialConfig = TrialConfig()  # the base every fold's search starts from
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    # The search trains at search_seed; every arm, `full` included, retrains at each of
    # `seeds`, which must not contain it (no selection bias: DESIGN.md, Study).
    search_seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    arms: list[str] = Field(default_factory=lambda: list(DEFAULT_ARMS), min_length=1)
    user_arms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Training algorithms compared with ERM (docs/algorithms.md), by their registered kind.
    # `full` is the ERM configuration and the reference; every other entry becomes the arm
    # `algorithm-<kind>`, with its own per-fold search at `full`'s budget. `erm` itself may be
    # listed, so a zoo's config names all of it: it is `full`, and gets no second search.
    algorithms: list[str] = Field(default_factory=list)
    algorithm_arms: dict[str, AlgorithmArmConfig] = Field(default_factory=dict)
    selection: SelectionConfig = Field(default_factory=lambda: SelectionConfig.model_validate({}))
    storage: str = "runs"
    # An Optuna RDB URL (postgresql://...) or journal:<folder>; None: a journal file per fold
    # under <study>/optuna/ (study/optuna_storage.py says why).
    optuna_storage: str | None = None
    tracking: TrackingConfig | None = None
    record_views: int = Field(default=4, ge=0)  # test records explained per fold
    analysis: AnalysisConfig = AnalysisConfig()
    max_failures: int = Field(default=1, ge=0)

    @field_validator("tracking", mode="before")
    @classmethod
    def _tracking_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("tracking")
    @classmethod
    def _tracking_installed(cls, value: TrackingConfig | None) -> TrackingConfig | None:
        if value is not None and importlib.util.find_spec("mlflow") is None:
            raise ValueError("mlflow is not installed: pip install 'heartbeatai[tracking]'")
        return value

    @field_validator("storage")
    @classmethod
    def _posix_storage(cls, value: str) -> str:
        # The lock, the journal and the Optuna SQLite file need a POSIX file system.
        if "://" in value:
            raise ValueError("a study needs a (shared) file system path; mount the bucket, or give the "
                             "results store URL to the dashboard only")
        return value

    @field_validator("arms", mode="before")
    @classmethod
    def _canonical_arm_names(cls, value: Any) -> Any:
        return [canonical_arm(a) if isinstance(a, str) else a for a in value] if isinstance(value, list) else value

    @model_validator(mode="before")
    @classmethod
    def _bootstrap_moved_into_analysis(cls, raw: Any) -> Any:
        # v1 configs (and the study.yaml of v1 stores) had a top-level `bootstrap`.
        if isinstance(raw, dict) and "bootstrap" in raw:
            raw = dict(raw)
            analysis = dict(raw.get("analysis") or {})
            analysis.setdefault("bootstrap", raw.pop("bootstrap"))
            raw["analysis"] = analysis
        return raw

    @model_validator(mode="after")
    def _arm_seeds_apart_from_the_search_seed(self) -> "StudyConfig":
        if self.search_seed in self.seeds:
            raise ValueError(f"seeds: the search seed {self.search_seed} is among the arm seeds {self.seeds}; "
                             "arms retrain on seeds disjoint from it, or `full` carries the search's selection luck")
        return self

    @field_validator("seeds", "protocols", "algorithms")
    @classmethod
    def _unique(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError("entries must be unique")
        return value

    @model_validator(mode="after")
    def _arms_known(self) -> "StudyConfig":
        for where, names in (("arms", self.arms), ("user_arms", list(self.user_arms))):
            for name in names:
                if name.startswith(ALGORITHM_ARM_PREFIX):
                    raise ValueError(f"{where}: {name!r}: arms named {ALGORITHM_ARM_PREFIX}<kind> come from "
                                     f"`algorithms: [{name[len(ALGORITHM_ARM_PREFIX):]}]`, with their own search")
        clash = sorted(set(self.user_arms) & set(BUILTIN_ARMS))
        if clash:
            raise ValueError(f"user_arms redefines built-in arm(s) {clash}: pick another name")
        known = set(BUILTIN_ARMS) | set(self.user_arms)
        for i, arm in enumerate(self.arms):
            if arm not in known:
                raise ValueError(f"arms[{i}]: unknown arm {arm!r}{did_you_mean(arm, known)} "
                                 f"(known: {', '.join(sorted(known))})")
        if "full" not in self.arms:
            raise ValueError("arms must include 'full': every other arm is compared against it")
        return self

    @model_validator(mode="after")
    def _algorithms_known(self) -> "StudyConfig":
        for i, kind in enumerate(self.algorithms):
            if kind not in ALGORITHMS:
                raise ValueError(f"algorithms[{i}]: unknown algorithm {kind!r}{did_you_mean(kind, ALGORITHMS)} "
                                 f"(registered: {', '.join(ALGORITHMS)}; `heartbeatai algorithms` lists them)")
        if not self.algorithms:
            return self
        if self.trial.algorithm.kind != DEFAULT_ALGORITHM:
            raise ValueError(f"algorithms: compared with `full`, which must train {DEFAULT_ALGORITHM} "
                             f"(trial.algorithm.kind is {self.trial.algorithm.kind!r})")
        searched = sorted(k for k in self.search.space if k.startswith("algorithm."))
        if searched:
            raise ValueError(f"search.space: {searched[0]!r}: with `algorithms`, each algorithm arm searches its "
                             "own declared parameters; `full`'s search stays ERM's")
        if not any(p in ARM_PROTOCOLS for p in self.protocols):
            raise ValueError(f"algorithms: compared only under {', '.join(ARM_PROTOCOLS)} (the protocols that "
                             "train every arm); add it to protocols")
        return self

    @model_validator(mode="after")
    def _algorithm_arms_apply(self) -> "StudyConfig":
        keys = trial_keys(self.trial)
        for kind, arm in self.algorithm_arms.items():
            where = f"algorithm_arms.{kind}"
            if kind not in self.compared_algorithms:
                raise ValueError(f"{where}: {kind!r} is not among the compared algorithms "
                                 f"{self.compared_algorithms}{did_you_mean(kind, self.compared_algorithms)}")
            for dotted in [*arm.overrides, *arm.space]:
                if dotted not in keys or dotted == "algorithm.kind":
                    raise ValueError(f"{where}: {dotted!r} is not a trial configuration key it may set"
                                     f"{did_you_mean(dotted, keys)}")
            try:
                self.algorithm_base(kind)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        return self

    def algorithm_base(self, kind: str, base: TrialConfig | None = None) -> TrialConfig:
        """`base` (by default the study's trial) as algorithm `kind`'s arm searches around it."""
        arm = self.algorithm_arms.get(kind, AlgorithmArmConfig())
        return (base or self.trial).with_overrides({**arm.overrides, "algorithm.kind": kind})

    def algorithm_space(self, kind: str) -> dict[str, Distribution]:
        """Algorithm `kind`'s search space: `full`'s, its declared parameters', and its arm's own."""
        from heartbeatai.study.search_space import declared_space

        return {**self.search.space, **declared_space("algorithm", kind),
                **self.algorithm_arms.get(kind, AlgorithmArmConfig()).space}

    @model_validator(mode="after")
    def _trial_and_overrides_validate(self) -> "StudyConfig":
        base = self.trial
        keys = trial_keys(base)
        named = {f"search.space.{k}": k for k in self.search.space}
        named |= {f"user_arms.{a}.{k}": k for a, o in self.user_arms.items() for k in o}
        for where, dotted in named.items():
            if dotted not in keys:
                raise ValueError(f"{where}: {dotted!r} is not a trial configuration key{did_you_mean(dotted, keys)}")
        for arm, overrides in self.user_arms.items():
            try:
                base.with_overrides(overrides)
            except ValueError as err:  # heartbeatai.config.ConfigError names the dotted key
                raise ValueError(f"user_arms.{arm}: {err}") from None
        return self

    def warnings(self) -> list[str]:
        """What is valid but deserves a second look, one line each (`study plan` and `run` print them)."""
        found = []
        if self.selection.metric in THRESHOLD_DEPENDENT:
            found.append(f"selection.metric {self.selection.metric}: its thresholds are tuned on the same "
                         "validation records that then select the model, so the selected value is optimistic; "
                         "val_macro_auroc or val_macro_auprc select without a threshold")
        if len(self.seeds) == 1:
            found.append("seeds: 1 arm seed(s): per-fold ablation intervals are conditional on the trained models "
                         "(seed variance needs at least 2 seeds; 3 or more for a useful one)")
        elif len(self.seeds) == 2:
            found.append("seeds: 2 arm seed(s): each domain's seed variance rests on 1 degree of freedom, so where "
                         "seed noise dominates a per-fold interval is a t with about 1 df (very wide); use 3 or more")
        return found

    def fold_arms(self, protocol: str) -> list[Arm]:
        """The arms a fold of `protocol` trains (ARM_PROTOCOLS: every arm and algorithm arm; else `full` only)."""
        if protocol not in ARM_PROTOCOLS:
            return resolve_arms([FULL], self.user_arms)
        return resolve_arms(self.arms, self.user_arms, self.compared_algorithms)

    @property
    def compared_algorithms(self) -> list[str]:
        """The algorithms that get an arm of their own: every listed one but ERM, which is `full`."""
        return [kind for kind in self.algorithms if kind != DEFAULT_ALGORITHM]

    # Derived paths -------------------------------------------------------------------------

    def study_dir(self, storage: str | None = None) -> str:
        root = storage or self.storage
        return f"{root.rstrip('/')}/{self.name}"


def parse_study_config(raw: dict[str, Any], source: str = "study config") -> StudyConfig:
    """Validate a mapping; a ConfigError names the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe_validation_error(err, StudyConfig)}") from None


def with_data_path(config: StudyConfig, path: str | Path) -> StudyConfig:
    """`config` studying the prepared dataset at `path` (the command line's --data) instead of its data."""
    raw = config.model_dump(mode="json", exclude_none=True)
    raw["data"] = {"path": str(Path(path).expanduser().resolve())}
    return parse_study_config(raw, f"--data {path}")


def load_study_config(path: str | Path) -> StudyConfig:
    return load_validated_yaml(StudyConfig, path, "study config", wrong_kind=_run_file_given)


def _run_file_given(raw: dict[str, Any]) -> str | None:
    # A mapping whose keys all belong to a run file, one of them a run file's own (fold_id, ...).
    own = set(raw) - set(StudyConfig.model_fields)
    if own and own <= set(RunFile.model_fields):
        return "this is a run file; use `heartbeatai train --config FILE`"
    return None


def dump_study_config(config: StudyConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
