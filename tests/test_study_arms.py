"""Every registered arm runs through a fold's arms stage and gets tested rows (DESIGN.md, Study).

Parametrised over heartbeatai.arms.BUILTIN_ARMS (and a user arm), as DomainBed tests every
algorithm: an arm registered tomorrow is tested the day it is registered. The whole study
runs once, in-process against the planted stage runner; each arm's rows are then checked.
"""

from __future__ import annotations

import pandas as pd
import pytest

from heartbeatai.arms import BUILTIN_ARMS, FULL, PREVALENCE, SEARCH
from heartbeatai.config import VARIANTS
from heartbeatai.metric_names import FOLD_METRICS
from heartbeatai.results import ResultsStore
from heartbeatai.study.study_run import start_study
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from study_fixtures import tiny_study
from train_fixtures import FOLD, write_planted_dataset

USER_ARMS = {"wide-stem": {"model.stem_width": 16, "model.stem_kernel": 9}}
ARMS = [*BUILTIN_ARMS, *USER_ARMS]
SEEDS = [1, 2]  # disjoint from the search seed 0


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[ResultsStore, dict[str, pd.DataFrame]]:
    tmp = tmp_path_factory.mktemp("arms")
    data = write_planted_dataset(tmp / "data", records_per_domain=24)
    config = tiny_study(data, tmp / "runs", name="arms", arms=ARMS, user_arms=USER_ARMS, seeds=SEEDS)
    start_study(config, progress=print, stage_runner=PlantedStageRunner(tmp / "fake"))
    store = ResultsStore(str(tmp / "runs"))
    tables = {t: store.read("arms", t) for t in ("trials", "fold_metrics", "predictions", "ablation_tests")}
    tables["trials"] = tables["trials"].drop_duplicates("trial_id", keep="last")
    return store, tables


def _overrides(arm: str) -> dict:
    return dict(BUILTIN_ARMS[arm].overrides) if arm in BUILTIN_ARMS else USER_ARMS[arm]


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_is_tested_for_every_seed_on_the_whole_held_out_domain(study, arm):
    _, tables = study
    tested = tables["fold_metrics"]
    tested = tested[(tested["arm"] == arm) & (tested["split"] == "test") & (tested["label_set"] == "noisy")]
    assert sorted(set(tested["seed"])) == SEEDS
    assert set(tested["selection"]) == {"val"} and set(tested["fold_id"]) == {FOLD}
    for _, runs in tested.groupby("seed"):
        assert set(runs["metric"]) == set(FOLD_METRICS)
    predictions = tables["predictions"]
    held_out = predictions[predictions["arm"] == FULL].groupby("seed")["record_id"].apply(set)
    for seed, ids in predictions[predictions["arm"] == arm].groupby("seed")["record_id"]:
        assert set(ids) == held_out[seed]


@pytest.mark.parametrize("arm", ARMS)
def test_every_trained_arm_retrains_the_selection_with_its_overrides_and_nothing_else(study, arm):
    _, tables = study
    trials = tables["trials"]
    runs = trials[trials["arm"] == arm]
    if not (BUILTIN_ARMS[arm].trained if arm in BUILTIN_ARMS else True):
        assert runs.empty  # the floor trains nothing
        return
    assert sorted(runs["seed"]) == SEEDS and set(runs["status"]) == {"completed"}
    assert runs["checkpoint_path"].notna().all() and set(runs["selection"]) == {"val"}
    overrides = _overrides(arm)
    for key, value in overrides.items():
        assert (runs[f"cfg.{key}"] == value).all(), key
    assert (runs["cfg.seed"].to_numpy() == runs["seed"].to_numpy()).all()
    # Everything the arm does not override is the selected search trial's configuration.
    selected = tables["fold_metrics"]
    selected = selected[(selected["arm"] == SEARCH) & (selected["selection"] == "val")]["trial_id"].iloc[0]
    chosen = trials[trials["trial_id"] == selected].iloc[0]
    for column in (c for c in trials.columns if c.startswith("cfg.") and c[4:] not in overrides and c != "cfg.seed"):
        expected = _expected_value(column[4:], chosen, overrides)
        if pd.isna(expected):
            assert runs[column].isna().all(), column
        else:
            assert (runs[column].astype(str) == str(expected)).all(), column


def _expected_value(key: str, chosen: pd.Series, overrides: dict):
    """The selected trial's value, except in a variant section whose kind the arm switches
    (loss-bce on a fold that selected focal): there the new kind's own defaults, fields both
    kinds have kept, and nothing of the kind switched away from."""
    section, _, name = key.rpartition(".")
    new_kind = overrides.get(f"{section}.kind")
    if section not in VARIANTS or new_kind is None or new_kind == chosen[f"cfg.{section}.kind"]:
        return chosen[f"cfg.{key}"]
    new, old = VARIANTS[section][new_kind].model_fields, VARIANTS[section][chosen[f"cfg.{section}.kind"]].model_fields
    if name not in new:
        return float("nan")
    return chosen[f"cfg.{key}"] if name in old else new[name].default


@pytest.mark.parametrize("arm", [a for a in ARMS if a != FULL])
def test_every_arm_but_full_gets_its_ablation_test_against_full(study, arm):
    _, tables = study
    assert arm in set(tables["ablation_tests"]["arm"])


def test_the_prevalence_floor_scores_every_record_with_the_training_prevalence(study):
    _, tables = study
    floor = tables["predictions"][tables["predictions"]["arm"] == PREVALENCE]
    scores = floor[[c for c in floor.columns if c.startswith("p_")]]
    assert (scores.nunique() == 1).all() and set(floor["trial_id"]) == {PREVALENCE}
    assert sorted(set(floor["seed"])) == SEEDS
