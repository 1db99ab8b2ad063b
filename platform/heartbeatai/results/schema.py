"""The results store's tables: columns, types, identities and allowed values.

One declaration serves the writers (validation, types of the Parquet parts) and the
readers (the empty frame of a missing table, which rows a later part overrides). The
lead fixes this schema (DESIGN.md, Results store); bump SCHEMA_VERSION on any change a
reader of an older store could misread.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import yaml

from heartbeatai.arms import PREVALENCE as PREVALENCE_ARM
from heartbeatai.arms import SEARCH as SEARCH_ARM
from heartbeatai.metric_names import CLASS_METRICS as _CLASS_METRIC_REGISTRY
from heartbeatai.metric_names import FOLD_METRICS as _FOLD_METRIC_REGISTRY
from heartbeatai.metric_names import VALIDATION_METRICS
from heartbeatai.protocols import INTRA, PROTOCOLS, REFERENCE

# 2: predictions of the validation split beside the test split; class intervals with their
# reliability and threshold fallback; the analysis' ablation_tests and degradation tables.
# 3: degradation's prevalence part corrects to the known test prevalence, with the EM and
# BBSE estimates beside it (far flags), its calibration error measured on the test records
# and its intervals marked conditional; rarity_contrast's interval carries between-cell
# variance, with a regression slope; ablation_tests carries one noise model's estimates, claims,
# families and Holm with its Monte Carlo band (analysis/decisions.py).
SCHEMA_VERSION = 3



@dataclass(frozen=True)
class RunKey:
    """The key every row of a per-run table carries: one trained model of one study."""

    study: str
    protocol: str
    fold_id: str
    arm: str
    seed: int
    selection: str
    trial_id: str

    def as_dict(self) -> dict[str, str | int]:
        return {name: getattr(self, name) for name in RUN_KEY}


RUN_KEY: tuple[str, ...] = tuple(f.name for f in fields(RunKey))

SELECTIONS = ("search", "val", "oracle")
# A trial's status in the trials table. "early_stopped" is ASHA's stop, which Ray's
# OptunaSearch reports to Optuna as COMPLETE: such a trial has a score like a completed one.
PENDING, RUNNING, COMPLETED, EARLY_STOPPED, ERRORED = "pending", "running", "completed", "early_stopped", "errored"
TRIAL_STATUSES = (PENDING, RUNNING, COMPLETED, EARLY_STOPPED, ERRORED)
ACTIVE_STATUSES = (PENDING, RUNNING)  # the trial may still report: its study is in progress
SCORED_STATUSES = (COMPLETED, EARLY_STOPPED)  # ended with a selection value: selectable
FINISHED_STATUSES = (*SCORED_STATUSES, ERRORED)
SPLITS = ("val", "test")
LABEL_SETS = ("noisy", "clean")
FOLD_METRICS = tuple(_FOLD_METRIC_REGISTRY)
CLASS_METRICS = tuple(_CLASS_METRIC_REGISTRY)
# The degradation split (analysis/degradation_split.py): the total F1 change, LODO minus
# reference on the same records, and the parts that sum to it exactly, each with its meaning.
DEGRADATION_TOTAL = "total"
DEGRADATION_PARTS = {
    "prevalence": "prior shift: correction to the true test prevalence",
    "threshold": "to the best threshold: an upper bound, uses test labels",
    "ranking": "F1 at the best thresholds",
}
# Label-free estimates of the test prevalence reported beside the truth, never used for a part
# (analysis/prior_shift.py): what a deployer could recover without labels.
PREVALENCE_ESTIMATORS = {"em": "EM (Saerens et al. 2002)", "bbse": "BBSE (Lipton et al. 2018)"}
# What LODO is paired with in the degradation split, and how a reader names it.
REFERENCE_KINDS = {REFERENCE: "matched-size reference", INTRA: "intra-source folds"}
TEST_SCOPES = ("fold", "across")
ACROSS_FOLDS = "all"
# A comparison's claim, and the decision Holm makes of it (analysis/decisions.py): a claim
# whose adjusted p straddles alpha across the bootstrap's Monte Carlo band is "at the
# threshold"; an arm identical to full on a fold is no comparison.
CLAIMS = ("better", "worse", "equivalent", "identical", "undecided")
DECISIONS = ("better", "worse", "equivalent", "undecided", "at the threshold", "identical")
# The decision families (analysis/decisions.py): the component arms' and, apart, the algorithm
# arms' comparisons with ERM, each a confirmatory and an exploratory one (ablation_tests); and
# the per-class comparisons of the rare-class heat map (class_tests), a family per class metric
# across domains and another per class metric for the single held-out domains.
FAMILIES = ("confirmatory", "exploratory", "algorithms: confirmatory", "algorithms: exploratory", "per-class",
            "per-class per-domain")

CONSENSUS_FOLD = "consensus"

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

# Annotations are strings here (postponed evaluation): "int" or "str".
_KEY_TYPES = {f.name: _I if f.type == "int" else _S for f in fields(RunKey)}


@dataclass(frozen=True)
class Table:
    """One table of the store.

    ``identity`` names the columns that identify a row: a row written later with the
    same identity replaces the earlier one when read (a rerun overwrites logically).
    ``required`` columns must be present and non-null in every write; other declared
    columns may be missing (written as null). Wide tables admit extra columns whose
    names start with one of ``dynamic_prefixes`` (``cfg.mixstyle.p``, ``p_AF``).
    """

    name: str
    columns: dict[str, pa.DataType]
    identity: tuple[str, ...]
    required: tuple[str, ...]
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dynamic_prefixes: tuple[str, ...] = ()

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, dtype) for name, dtype in self.columns.items()])

    def is_dynamic(self, column: str) -> bool:
        return any(column.startswith(prefix) and len(column) > len(prefix) for prefix in self.dynamic_prefixes)

    def empty_frame(self) -> pd.DataFrame:
        return self.arrow_schema.empty_table().to_pandas()


def _per_run(name: str, columns: dict[str, pa.DataType], extra_identity: tuple[str, ...] = (),
             required: tuple[str, ...] = (), allowed: dict[str, tuple[str, ...]] | None = None,
             dynamic_prefixes: tuple[str, ...] = ()) -> Table:
    identity = RUN_KEY + extra_identity
    return Table(
        name=name,
        columns={**_KEY_TYPES, **columns},
        identity=identity,
        required=identity + required,
        allowed={"protocol": PROTOCOLS, "selection": SELECTIONS, **(allowed or {})},
        dynamic_prefixes=dynamic_prefixes,
    )


_VAL_METRICS = {name: _F for name in VALIDATION_METRICS}


def _with_interval(metric: str) -> dict[str, pa.DataType]:
    return {metric: _F, f"{metric}_lo": _F, f"{metric}_hi": _F}


TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        _per_run(
            "trials",
            {
                "status": _S, "error": _S, "best_epoch": _I, "epochs_run": _I, "wall_time_s": _F,
                **_VAL_METRICS,
                "selection_metric": _S, "selection_value": _F, "provenance": _S, "checkpoint_path": _S,
                # the Ray node the trial trained on (rank 0's); empty where no Ray ran it
                "node_id": _S,
            },
            required=("status",),
            allowed={"status": TRIAL_STATUSES},
            dynamic_prefixes=("cfg.",),
        ),
        _per_run("epochs", {"epoch": _I, "train_loss": _F, **_VAL_METRICS}, ("epoch",)),
        _per_run(
            "fold_metrics",
            {"split": _S, "label_set": _S, "metric": _S, "value": _F, "ci_low": _F, "ci_high": _F,
             "classes_used": _S},
            ("split", "label_set", "metric"),
            required=("value",),
            allowed={"split": SPLITS, "label_set": LABEL_SETS, "metric": FOLD_METRICS},
        ),
        _per_run(
            "class_metrics",
            {"split": _S, "label_set": _S, "class": _S, "positives": _I, "train_prevalence": _F,
             "test_prevalence": _F, "present": _B,
             **{column: dtype for m in CLASS_METRICS for column, dtype in _with_interval(m).items()},
             # Below the study's minimum positives an interval is shown as the positive count.
             "interval_reliable": _B, "brier": _F, "threshold": _F,
             # No validation positive to tune on: the threshold calls the training prevalence.
             "threshold_fallback": _B, "val_prevalence": _F},
            ("split", "label_set", "class"),
            allowed={"split": SPLITS, "label_set": LABEL_SETS},
        ),
        # Validation predictions calibrate a model for the degradation split's prior correction.
        _per_run(
            "predictions", {"split": _S, "record_id": _S, "domain": _S}, ("split", "record_id"),
            required=("domain",), allowed={"split": SPLITS}, dynamic_prefixes=("p_", "y_", "yclean_"),
        ),
        Table(
            "importances",
            # n_distinct_trials: the completed trials of distinct configurations they rest on
            # (absent in stores written before it was recorded); arm: whose search, `search`
            # (full's) or an algorithm arm's (empty in stores written before: full's).
            {"study": _S, "protocol": _S, "fold_id": _S, "param": _S, "importance": _F, "n_distinct_trials": _I,
             "arm": _S},
            identity=("study", "protocol", "fold_id", "param", "arm"),
            required=("study", "protocol", "fold_id", "param", "importance"),
            allowed={"protocol": PROTOCOLS},
        ),
        Table(
            "dataset_card",
            {"study": _S, "domain": _S, "class": _S, "count": _I, "prevalence": _F, "n_records": _I,
             "n_patients": _I, "fs": _I, "median_seconds": _F},
            identity=("study", "domain", "class"),
            required=("study", "domain", "class", "count"),
        ),
        _per_run(
            "record_views",
            {"record_id": _S, "class": _S, "true_labels": _S, "pred_labels": _S, "probabilities": _S,
             "fs": _I, "signal": _S, "attribution": _S, "se_gates": _S, "misclassified": _B, "rank": _I},
            ("record_id", "class"),
            required=("signal", "fs"),
        ),
        Table(
            "best_configs",
            # arm: whose search selected it, `search` (full's) or an algorithm arm's
            # (`algorithm-vrex`); empty in stores written before algorithm arms had rows: full's.
            {"study": _S, "protocol": _S, "fold_id": _S, "selection": _S, "metric": _S, "value": _F,
             "run_file": _S, "arm": _S},
            identity=("study", "protocol", "fold_id", "selection", "arm"),
            required=("study", "protocol", "fold_id", "selection", "run_file"),
            allowed={"protocol": PROTOCOLS, "selection": SELECTIONS},
        ),
        Table(
            "degradation",
            {"study": _S, "domain": _S, "class": _S, "label_set": _S, "reference_kind": _S,
             "n_records": _I, "n_positives": _I, "n_seeds": _I, "interval_reliable": _B,
             "f1_reference": _F, "f1_lodo": _F,
             **{column: dtype for part in (DEGRADATION_TOTAL, *DEGRADATION_PARTS)
                for column, dtype in _with_interval(part).items()},
             "auroc_reference": _F, "auroc_lodo": _F, **_with_interval("auroc_change"),
             "test_prevalence": _F, "train_prevalence_lodo": _F, "train_prevalence_reference": _F,
             # Each estimator's prevalence and whether it is far from test_prevalence, per model.
             **{f"{estimator}_{figure}_{side}": dtype for estimator in PREVALENCE_ESTIMATORS
                for figure, dtype in (("prevalence", _F), ("far", _B)) for side in ("lodo", "reference")},
             # Expected calibration error of the calibrated probabilities on the shared test records.
             "test_calibration_error_lodo": _F, "test_calibration_error_reference": _F,
             # The intervals resample records with the trained models fixed.
             "conditional": _B},
            identity=("study", "domain", "class", "label_set"),
            required=("study", "domain", "class", "label_set", "reference_kind"),
            allowed={"label_set": LABEL_SETS, "reference_kind": tuple(REFERENCE_KINDS)},
        ),
        # Per algorithm arm, held-out domain, class and label set: the degradation split of the
        # algorithm's LODO model against ERM's (`full`) on the same records and seeds
        # (analysis/degradation.py, algorithm_part_rows). Any in-distribution reference cancels
        # from both sides' parts, so each part is the algorithm's part minus ERM's, in F1 units:
        # positive = the algorithm loses less there than ERM (total: its F1 minus ERM's).
        Table(
            "algorithm_parts",
            {"study": _S, "arm": _S, "domain": _S, "class": _S, "label_set": _S,
             "n_records": _I, "n_positives": _I, "n_seeds": _I, "interval_reliable": _B,
             "train_prevalence": _F, "f1_erm": _F, "f1_algorithm": _F,
             **{column: dtype for part in (DEGRADATION_TOTAL, *DEGRADATION_PARTS, "auroc_change")
                for column, dtype in _with_interval(part).items()},
             "conditional": _B},
            identity=("study", "arm", "domain", "class", "label_set"),
            required=("study", "arm", "domain", "class", "label_set"),
            allowed={"label_set": LABEL_SETS},
        ),
        # Whether the LODO drop is worst on rare classes (analysis/rarity_contrast.py): one row
        # per label set, over the degradation cells with enough test positives.
        Table(
            "rarity_contrast",
            {"study": _S, "label_set": _S, "reference_kind": _S, "min_positives": _I, "n_cells": _I,
             "n_rare": _I, "n_common": _I, "n_domains": _I, "rare_prevalence_max": _F, "common_prevalence_min": _F,
             "f1_reference_macro": _F, "f1_lodo_macro": _F, "drop_rare": _F, "drop_common": _F,
             **_with_interval("contrast"), "ratio": _F,
             # The drop's change per tenfold lower training prevalence over every cell; the
             # number of classes the intervals rest on (their unit: a delete-one-class jackknife).
             **_with_interval("slope"), "n_classes": _I, "method": _S},
            identity=("study", "label_set"),
            required=("study", "label_set"),
            allowed={"label_set": LABEL_SETS},
        ),
        # One row per protocol x metric x arm, per held-out domain (scope "fold") and across
        # them (scope "across", fold_id "all"). Differences are arm - full, oriented so that
        # positive means the arm is better (negated for metrics that are minimised).
        Table(
            "ablation_tests",
            {"study": _S, "protocol": _S, "metric": _S, "arm": _S, "scope": _S, "fold_id": _S,
             "reference": _B, "n_folds": _I, "n_seeds": _I, "n_records": _I,
             "mean_full": _F, "mean_arm": _F, **_with_interval("diff"), "se": _F, "df": _F, "tau2": _F,
             "conditional": _B, "identical": _B, "p_value": _F,
             "n_better": _I, "n_worse": _I, "p_better": _F, "p_equivalent": _F, "p_worse": _F, "rope": _F,
             "family": _S, "claim": _S, "p_claim": _F, "p_holm": _F, "p_holm_low": _F, "p_holm_high": _F,
             "decision": _S, "method": _S},
            identity=("study", "protocol", "metric", "arm", "scope", "fold_id"),
            required=("study", "protocol", "metric", "arm", "scope", "fold_id"),
            allowed={"protocol": PROTOCOLS, "scope": TEST_SCOPES, "decision": DECISIONS, "claim": CLAIMS,
                     "family": FAMILIES},
        ),
        # The rare-class heat map's comparisons: per protocol, class metric, arm and class, the
        # arm minus full across the held-out domains where the class has at least the study's
        # minimum of test positives (ablation_tests' noise model), decided by Holm over every
        # arm x class of one metric (family "per-class").
        Table(
            "class_tests",
            {"study": _S, "protocol": _S, "metric": _S, "arm": _S, "class": _S, "fold_id": _S, "reference": _B,
             "n_folds": _I,
             "n_seeds": _I, "positives": _I, **_with_interval("diff"), "se": _F, "df": _F, "tau2": _F,
             "conditional": _B, "p_value": _F, "p_better": _F, "p_equivalent": _F, "p_worse": _F, "rope": _F,
             "family": _S, "claim": _S, "p_claim": _F, "p_holm": _F, "p_holm_low": _F, "p_holm_high": _F,
             "decision": _S, "method": _S},
            # fold_id "across" (ACROSS_FOLDS) for the pooled row; a store analysed before the
            # per-domain rows has no fold_id, and every row of it is pooled.
            identity=("study", "protocol", "metric", "arm", "class", "fold_id"),
            required=("study", "protocol", "metric", "arm", "class"),
            allowed={"protocol": PROTOCOLS, "decision": DECISIONS, "claim": CLAIMS, "family": FAMILIES,
                     "metric": CLASS_METRICS},
        ),
    )
}


def table(name: str) -> Table:
    """The declaration of ``name``; a clear error for a table the schema does not have."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown results table {name!r}; known: {', '.join(TABLES)}") from None


# --- Layout: <storage>/<study>/results/{schema_version.json, <table>/part-*.parquet} ---------
# Beside the tables, results/study_summary.json: the study's trial counts, folds, state and
# damaged tables for the studies list, written when its stages end and rebuilt by readers
# when missing or stale (summary.py). It is derived from the tables, so it is no table and
# changes no SCHEMA_VERSION.

RESULTS_DIR = "results"
VERSION_FILE = "schema_version.json"
# The study's config beside its results (study/study_run.py writes it).
STUDY_CONFIG = "study.yaml"
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"

# Study names become path components: letters, digits, dot, dash, underscore, and never
# a name made of dots, so no study name can reach outside the storage root.
_STUDY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def check_study_name(study: str) -> str:
    if not isinstance(study, str) or not _STUDY_NAME.match(study) or set(study) <= {"."}:
        shown = repr(study) if len(repr(study)) <= 60 else repr(study)[:57] + "..."  # never echo a huge name back
        raise ValueError(f"invalid study name {shown}: use letters, digits, '.', '_' and '-' (at most 128)")
    return study


def stored_study_name(version_text: str | None, config_text: str | None, folder: str) -> str:
    """The name a study folder's rows carry on disk: the study's name when its results were
    first written, recorded in VERSION_FILE (`study`); for a store older than that record,
    the `name` of its study.yaml, else the folder's name.

    A study is named by its folder (DESIGN.md, Dashboard, report and export): readers show
    every row under the folder's name, so a copied or renamed folder reads, analyses and
    exports under its new one, and writers keep stamping rows with this stored name, so the
    folder's rows stay of one study whatever it is called. Rows of any other name are
    foreign: another study's rows mixed into this folder.
    """
    for text, key in ((version_text, "study"), (config_text, "name")):
        try:
            found = (json.loads(text) if key == "study" else _yaml_mapping(text)).get(key) if text else None
        except (ValueError, AttributeError):
            found = None
        if isinstance(found, str) and _STUDY_NAME.match(found):
            return found
    return folder


def _yaml_mapping(text: str) -> dict:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def is_part_name(name: str) -> bool:
    """Finished parts only: temporaries start with a dot and are never read."""
    return name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)


def resolve_filesystem(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path on it, for a local path or a URL (s3://, gs://)."""
    text = os.fspath(location)
    if "://" in text and not text.startswith("file://"):
        filesystem, path = pafs.FileSystem.from_uri(text)
        return filesystem, path.rstrip("/")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return pafs.LocalFileSystem(), os.path.abspath(text)


def pooled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a per-class test table pooled across held-out domains: fold_id ACROSS_FOLDS,
    or none at all (a class_tests table analysed before it had per-domain rows)."""
    return frame[frame["fold_id"].isna() | (frame["fold_id"] == ACROSS_FOLDS)]


def searched_by(frame: pd.DataFrame) -> pd.Series:
    """Whose search each row of best_configs or importances belongs to: its `arm`, or `search`
    (full's) where it has none, as stores written before those tables named it."""
    if "arm" not in frame:
        return pd.Series(SEARCH_ARM, index=frame.index)
    return frame["arm"].fillna(SEARCH_ARM)
