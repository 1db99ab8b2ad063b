"""The registries (metrics, arms, leads, run key) are the only declaration of their concept,
and every list that other parts keep derives from them: a new entry is tested the day it is
registered."""

from __future__ import annotations

import pandas as pd
import pytest

from heartbeatai import ecg
from heartbeatai.arms import ALIASES, BUILTIN_ARMS, DEFAULT_ARMS, canonical_arm, is_reference, resolve_arms
from heartbeatai.config import TrialConfig, flatten_config
from heartbeatai.metric_names import (
    CLASS_METRICS, EPOCH_COLUMNS, FOLD_METRICS, VALIDATION_METRICS, fold_metric_of, metric_mode,
)
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.results.schema import RUN_KEY, RunKey, table
from heartbeatai.study.study_config import ConfigError, parse_study_config

MINIMAL = {"name": "s", "data": {"path": "/prepared"}}


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_every_validation_metric_has_a_column_in_the_trials_and_epochs_tables(metric):
    assert metric in table("trials").columns
    assert metric in table("epochs").columns
    assert metric in EPOCH_COLUMNS


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_every_validation_metric_selects_in_the_direction_it_improves(metric):
    loaded = parse_study_config({**MINIMAL, "selection": {"metric": metric, "oracle": fold_metric_of(metric) is not None}})
    assert loaded.selection.mode == metric_mode(metric)
    wrong = "max" if metric_mode(metric) == "min" else "min"
    with pytest.raises(ConfigError, match="selection.mode"):
        parse_study_config({**MINIMAL, "selection": {"metric": metric, "mode": wrong, "oracle": False}})


def test_losses_and_the_brier_score_are_minimised_and_scores_maximised():
    assert metric_mode("val_loss") == metric_mode("val_brier") == metric_mode("brier") == "min"
    assert all(metric_mode(m) == "max" for m in (*CLASS_METRICS, "macro_auroc", "val_macro_f1"))


@pytest.mark.parametrize("metric", list(FOLD_METRICS))
def test_every_fold_metric_is_an_allowed_value_of_fold_metrics_and_has_a_validation_twin(metric):
    assert metric in table("fold_metrics").allowed["metric"]
    assert fold_metric_of(f"val_{metric}") == metric


@pytest.mark.parametrize("metric", list(CLASS_METRICS))
def test_every_class_metric_has_a_value_and_an_interval_column(metric):
    columns = table("class_metrics").columns
    assert {metric, f"{metric}_lo", f"{metric}_hi"} <= set(columns)


def test_a_metric_that_no_epoch_records_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="selection.metric: 'val_accuracy' is not recorded"):
        parse_study_config({**MINIMAL, "selection": {"metric": "val_accuracy"}})


def test_the_oracle_needs_a_test_set_counterpart_of_the_selection_metric():
    assert fold_metric_of("val_loss") is None
    with pytest.raises(ConfigError, match="selection.oracle"):
        parse_study_config({**MINIMAL, "selection": {"metric": "val_loss"}})
    assert parse_study_config({**MINIMAL, "selection": {"metric": "val_loss", "oracle": False}}).selection.mode == "min"


@pytest.mark.parametrize("name", list(BUILTIN_ARMS))
def test_every_builtin_arm_overrides_real_keys_of_the_trial_config(name):
    arm = BUILTIN_ARMS[name]
    keys = set(flatten_config(TrialConfig()))
    assert set(arm.overrides) <= keys
    changed = TrialConfig().with_overrides(dict(arm.overrides))
    assert (changed == TrialConfig()) == (not arm.overrides)
    assert name in DEFAULT_ARMS


def test_only_ablations_are_outside_the_reference_rows():
    assert {a for a in BUILTIN_ARMS if is_reference(a)} == {"baseline", "prevalence"}
    assert not is_reference("full") and not is_reference("no-se")


@pytest.mark.parametrize(("alias", "canonical"), list(ALIASES.items()))
def test_older_arm_spellings_read_as_the_canonical_ones(alias, canonical, tmp_path):
    assert canonical in BUILTIN_ARMS and canonical_arm(alias) == canonical
    assert [a.name for a in resolve_arms(["full", alias], {})] == ["full", canonical]
    assert parse_study_config({**MINIMAL, "arms": ["full", alias]}).arms == ["full", canonical]
    key = RunKey("s", "lodo", "lodo:a", alias, 1, "val", "t1").as_dict()
    ResultsWriter(tmp_path / "s").write("trials", pd.DataFrame([{**key, "status": "completed"}]))
    assert ResultsStore(str(tmp_path)).read("s", "trials")["arm"].tolist() == [canonical]


def test_the_run_key_is_the_identity_prefix_of_every_per_run_table():
    assert RUN_KEY == ("study", "protocol", "fold_id", "arm", "seed", "selection", "trial_id")
    for name in ("trials", "epochs", "fold_metrics", "class_metrics", "predictions", "record_views"):
        assert table(name).identity[: len(RUN_KEY)] == RUN_KEY


def test_twelve_standard_leads_and_the_papers_four_domains():
    assert len(ecg.LEADS) == ecg.N_LEADS == 12 and len(set(ecg.LEADS)) == 12
    assert set(ecg.PAPER_DOMAINS) <= set(ecg.DOMAINS) and len(ecg.PAPER_DOMAINS) == 4
