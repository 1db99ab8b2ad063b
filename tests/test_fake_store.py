"""The generated store the dashboard's tests and benchmark stand on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heartbeatai.analysis.decisions import decide

from heartbeatai.arms import DEFAULT_ARMS, SEARCH, algorithm_arm, is_reference
from heartbeatai.metric_names import FOLD_METRICS
from heartbeatai.results import ResultsStore, schema
from heartbeatai.testing.fake_store import make_store
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM


def test_the_synthetic_store_fills_every_table_readably(tmp_path):
    # An algorithm arm too: its own search and the algorithm_parts table.
    arms = (*DEFAULT_ARMS, algorithm_arm(next(k for k in ALGORITHMS if k != DEFAULT_ALGORITHM)).name)
    make_store(tmp_path, n_folds=2, n_trials=12, classes=6, seeds=1, records_per_fold=10, record_views_per_fold=2,
               arms=arms)
    store = ResultsStore(tmp_path)

    states = {name: store.status("demo", name).state for name in schema.TABLES}

    assert states == {name: "ok" for name in schema.TABLES}
    assert set(store.read("demo", "best_configs").fold_id) == {"lodo:cpsc", "lodo:ptbxl", "consensus"}


def test_a_record_view_carries_twelve_leads_in_millivolts_with_matching_attributions(tmp_path):
    make_store(tmp_path, n_folds=1, n_trials=4, classes=4, seeds=1, records_per_fold=5, record_views_per_fold=2)

    view = ResultsStore(tmp_path).read("demo", "record_views").sort_values("rank").iloc[0]
    signal, attribution = np.array(json.loads(view.signal)), np.array(json.loads(view.attribution))

    assert signal.shape[0] == 12 and signal.shape == attribution.shape
    assert 0.3 < np.ptp(signal[1]) < 5  # lead II: an R wave of about a millivolt, not microvolts
    assert view.misclassified


def test_a_study_in_progress_has_running_trials_and_no_test_results_for_its_last_fold(tmp_path):
    make_store(tmp_path, n_folds=3, n_trials=30, classes=4, seeds=1, in_progress=True)
    store = ResultsStore(tmp_path)

    progress = store.progress("demo").set_index("fold_id")

    assert progress.loc["lodo:georgia", "running"] > 0
    assert "lodo:georgia" not in set(store.read("demo", "fold_metrics").fold_id)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    make_store(root, n_folds=4, n_trials=8, classes=10, seeds=2, records_per_fold=12, record_views_per_fold=1)
    return ResultsStore(root)


@pytest.fixture(scope="module")
def three_seed_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake3")
    make_store(root, n_folds=4, n_trials=8, classes=10, seeds=3, records_per_fold=4, record_views_per_fold=1)
    return ResultsStore(root)


def test_the_fake_writes_the_current_schema_version(store):
    assert store.schema_version("demo") == schema.SCHEMA_VERSION == 3


def test_predictions_hold_the_held_out_test_records_and_the_training_domains_validation_records(store):
    predictions = store.read("demo", "predictions", filters={"fold_id": "lodo:cpsc"})

    assert set(predictions["split"]) == {"val", "test"}
    assert set(predictions.loc[predictions["split"] == "test", "domain"]) == {"cpsc"}
    assert "cpsc" not in set(predictions.loc[predictions["split"] == "val", "domain"])
    assert not predictions.duplicated(["split", "record_id"]).any()


def test_class_intervals_are_reliable_from_ten_positives_and_rare_classes_fall_back(store):
    classes = store.read("demo", "class_metrics")

    assert (classes["interval_reliable"] == (classes["positives"] >= 10)).all()
    assert classes["interval_reliable"].any() and not classes["interval_reliable"].all()
    fallback = classes[classes["threshold_fallback"]]
    assert not fallback.empty and (fallback["val_prevalence"] == 0).all()
    assert (classes.loc[~classes["threshold_fallback"], "val_prevalence"] > 0).all()
    # The fallback classes are the rarest of each fold's training set.
    for _, fold in classes[classes["arm"] == "full"].groupby(["fold_id", "seed", "selection"]):
        cut = fold.loc[fold["threshold_fallback"], "train_prevalence"].max()
        assert (fold.loc[~fold["threshold_fallback"], "train_prevalence"] >= cut).all()


def test_arm_seeds_are_disjoint_from_the_search_seed(store):
    trials = store.read("demo", "trials", columns=["arm", "seed"])

    assert set(trials.loc[trials["arm"] == SEARCH, "seed"]) == {0}
    assert set(trials.loc[trials["arm"] != SEARCH, "seed"]) == {1, 2}


def test_degradation_parts_add_up_exactly_to_the_total_and_the_f1_drop(store):
    rows = store.read("demo", "degradation")

    parts = rows["prevalence"] + rows["threshold"] + rows["ranking"]
    assert np.abs(parts - rows["total"]).max() < 1e-12
    assert np.abs(rows["f1_lodo"] - rows["f1_reference"] - rows["total"]).max() < 1e-12
    assert np.abs(rows["auroc_lodo"] - rows["auroc_reference"] - rows["auroc_change"]).max() < 1e-12
    for part in ("total", "prevalence", "threshold", "ranking", "auroc_change"):
        assert (rows[f"{part}_lo"] <= rows[part]).all() and (rows[part] <= rows[f"{part}_hi"]).all()
    assert ((rows["n_positives"] > 0) & (rows["n_positives"] < rows["n_records"])).all()  # present classes only
    assert (rows["interval_reliable"] == (rows["n_positives"] >= 10)).all()
    assert (rows["f1_lodo"] >= 0).all()


def test_degradation_pairs_on_the_matched_reference_where_the_study_has_one_else_on_intra_folds(store):
    rows = store.read("demo", "degradation")
    kinds = rows.groupby("domain")["reference_kind"].unique().map(list).to_dict()
    references = set(store.read("demo", "trials", filters={"protocol": "reference"})["fold_id"])

    assert kinds == {"cpsc": ["intra"], "ptbxl": ["intra"], "georgia": ["intra"], "chapman": ["reference"]}
    assert references == {"reference:chapman:0"}
    card = store.read("demo", "dataset_card").groupby("domain")["n_records"].first()
    per_domain = rows.groupby("domain")["n_records"].first()
    assert per_domain["chapman"] == card["chapman"] and per_domain["cpsc"] < card["cpsc"]


def test_every_ablation_arm_and_metric_has_a_row_per_held_out_domain_and_one_across(store):
    tests = store.read("demo", "ablation_tests")

    assert set(tests["metric"]) == set(FOLD_METRICS)
    assert set(tests["arm"]) == set(DEFAULT_ARMS) - {"full"}
    assert (tests["reference"] == tests["arm"].map(is_reference)).all()
    for _, group in tests.groupby(["metric", "arm"]):
        assert sorted(group.loc[group["scope"] == "fold", "fold_id"]) == [
            "lodo:chapman", "lodo:cpsc", "lodo:georgia", "lodo:ptbxl"]
        assert list(group.loc[group["scope"] == "across", "fold_id"]) == [schema.ACROSS_FOLDS]


def test_differences_are_oriented_so_that_positive_means_the_arm_is_better(store):
    tests = store.read("demo", "ablation_tests", filters={"scope": "fold", "arm": "prevalence"})
    by_metric = tests.set_index(["metric", "fold_id"])

    assert (tests["diff"] < 0).all()  # the floor is worse on every metric, the Brier score included
    brier = by_metric.loc[("brier", "lodo:cpsc")]
    assert brier["diff"] == pytest.approx(brier["mean_full"] - brier["mean_arm"])


def test_fold_rows_carry_an_interval_of_their_difference_and_one_claim(store):
    folds = store.read("demo", "ablation_tests", filters={"scope": "fold"})
    bounded = folds.dropna(subset=["diff_lo", "diff_hi"])
    assert len(bounded) and (bounded["diff_lo"] <= bounded["diff"]).all() and (bounded["diff"] <= bounded["diff_hi"]).all()
    assert set(folds["claim"]) <= set(schema.CLAIMS) and set(folds["family"]) == {"exploratory"}


def test_holm_runs_over_each_declared_family(three_seed_store):
    tests = three_seed_store.read("demo", "ablation_tests")
    claimed = tests[tests["claim"].isin(["better", "worse", "equivalent"])]
    in_family = claimed[~claimed["reference"].astype(bool)]  # baseline and floor stand outside
    confirmatory = in_family[in_family["family"] == "confirmatory"]
    assert set(confirmatory["scope"]) == {"across"} and set(confirmatory["metric"]) == {"macro_auroc"}
    for _, family in in_family.groupby("family"):
        assert (family["p_holm"] >= family["p_claim"] - 1e-12).all()
        assert family["p_holm"].min() == pytest.approx(min(1.0, len(family) * family["p_claim"].min()))


def test_across_rows_decide_by_the_stored_rule(store):
    across = store.read("demo", "ablation_tests", filters={"scope": "across"})
    confidence = across[["p_better", "p_equivalent", "p_worse"]]
    assert np.allclose(confidence.sum(axis=1), 1.0)
    assert list(across["decision"]) == [decide(row, 0.95) for row in across.to_dict("records")]
    assert "worse" in set(across["decision"])  # the prevalence floor, at least
    assert (across["n_folds"] == 4).all() and (across["df"] == 3).all()
    assert (across["n_better"] + across["n_worse"] <= across["n_folds"]).all()
    assert (across["rope"] == 0.01).all()


def test_the_decision_threshold_of_the_fake_can_be_changed(tmp_path):
    make_store(tmp_path, n_folds=3, n_trials=6, classes=6, seeds=2, decision_probability=0.5)
    tests = ResultsStore(tmp_path).read("demo", "ablation_tests")
    decided = tests["decision"].isin(["better", "worse", "equivalent"])
    assert decided.sum() > sum(decide(row, 0.95) in ("better", "worse", "equivalent")
                               for row in tests.to_dict("records"))
    assert list(tests["decision"]) == [decide(row, 0.5) for row in tests.to_dict("records")]