"""Paired ablation statistics: Holm, effect sizes, Wilcoxon guards, paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import wilcoxon

from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.study.evaluation import evaluate_test
from heartbeatai.study.statistics import (
    ABLATION_TESTS_COLUMNS,
    ablation_tests,
    bootstrap_p,
    holm,
    rank_biserial,
    wilcoxon_p,
)

CLASSES = ["AF", "RBBB", "PAC"]


def test_holm_matches_the_step_down_worked_by_hand_and_skips_nan():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = .02 .03 .06 .04 -> running max
    adjusted = holm([0.01, 0.04, np.nan, 0.03, 0.005])
    assert adjusted[[0, 1, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[2])
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(p_values):
    adjusted = holm(p_values)
    p = np.asarray(p_values)
    assert (adjusted >= p - 1e-12).all() and (adjusted <= 1).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(adjusted[order]) >= -1e-12).all()
    # The smallest p-value is multiplied by the family size (capped at 1).
    assert adjusted[order[0]] == pytest.approx(min(1.0, len(p) * p[order[0]]))


def test_rank_biserial_is_the_signed_share_of_rank_sums():
    assert rank_biserial([1, -2, 3, 4]) == pytest.approx((8 - 2) / 10)
    assert rank_biserial([0.1, 0.2, 0.0]) == 1.0
    assert rank_biserial([-0.1, -0.3]) == -1.0


def test_wilcoxon_is_not_run_below_six_nonzero_pairs_nor_on_all_zero_differences():
    p, note = wilcoxon_p([0.1, 0.2, -0.05, 0.3, 0.0, 0.0, 0.1])
    assert np.isnan(p) and "5 non-zero" in note
    p, note = wilcoxon_p([0.0] * 8)
    assert np.isnan(p) and "zero" in note
    d = [0.1, 0.2, -0.05, 0.3, 0.15, 0.12]
    p, note = wilcoxon_p(d)
    assert note is None and p == pytest.approx(wilcoxon(d).pvalue)


def test_bootstrap_p_never_reaches_zero_and_is_one_when_centred():
    assert bootstrap_p(np.full(99, 0.2)) == pytest.approx(2 / 100)
    assert bootstrap_p(np.r_[-np.ones(50), np.ones(50)]) == 1.0


KEY = {"study": "abl", "protocol": "lodo", "selection": "val"}


def _study_tables(arm_separation: dict[str, float], folds=4, seeds=2, n=250):
    """fold_metrics, class_metrics and predictions of a study whose arms differ in skill.

    Each record has a fixed latent "difficulty" shared by every arm and seed, so runs
    on the same fold are correlated the way retrained models are.
    """
    tables = {"fold_metrics": [], "class_metrics": [], "predictions": []}
    for f in range(folds):
        rng = np.random.default_rng(f)
        y = rng.random((n, 3)) < np.array([0.3, 0.2, 0.1])
        latent = rng.normal(size=y.shape)
        for seed in range(seeds):
            noise = np.random.default_rng(100 * f + seed).normal(scale=0.3, size=y.shape)
            for arm, separation in arm_separation.items():
                logits = latent + noise + separation * y
                key = {**KEY, "fold_id": f"lodo:d{f}", "arm": arm, "seed": seed, "trial_id": f"{arm}-{f}-{seed}"}
                rows = evaluate_test([f"r{f}-{i:04d}" for i in range(n)], [f"d{f}"] * n, y,
                                     1 / (1 + np.exp(-logits)), np.full(3, 0.5), CLASSES,
                                     y.mean(axis=0), key, n_boot=10)
                for name, frame in rows.items():
                    tables[name].append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}


@pytest.fixture(scope="module")
def study_tables():
    return _study_tables({"full": 2.0, "no-se": 1.2, "twin": 2.0})


def test_a_weaker_arm_is_significantly_worse_and_an_identical_arm_is_not_tested(study_tables, caplog):
    result = ablation_tests(study_tables["fold_metrics"], study_tables["predictions"],
                            study_tables["class_metrics"], metrics=("macro_auroc", "macro_f1"),
                            n_boot=200)
    assert list(result.columns) == ABLATION_TESTS_COLUMNS
    rows = result.set_index(["arm", "metric"])
    weaker = rows.loc[("no-se", "macro_auroc")]
    assert weaker["n_pairs"] == 8
    assert weaker["mean_diff"] < 0 and weaker["diff_hi"] < 0
    assert weaker["effect_size"] == -1.0
    assert weaker["wilcoxon_p"] == pytest.approx(2 / 2**8)  # exact: all 8 differences negative
    assert weaker["bootstrap_p"] < 0.01
    assert weaker["p_holm"] >= weaker["wilcoxon_p"]
    assert weaker["mean_diff"] == pytest.approx(weaker["mean_arm"] - weaker["mean_full"])
    assert weaker["diff_lo"] <= weaker["mean_diff"] <= weaker["diff_hi"]
    twin = rows.loc[("twin", "macro_auroc")]
    assert twin["mean_diff"] == 0 and twin["diff_lo"] == 0 and twin["diff_hi"] == 0
    assert np.isnan(twin["wilcoxon_p"]) and np.isnan(twin["p_holm"])
    assert any("twin" in note and "zero" in note for note in result.attrs["notes"])


def test_holm_corrects_within_a_metric_across_arms(study_tables):
    result = ablation_tests(study_tables["fold_metrics"], study_tables["predictions"],
                            study_tables["class_metrics"], metrics=("macro_auroc",), n_boot=50)
    tested = result.dropna(subset=["wilcoxon_p"])
    assert tested["p_holm"].tolist() == pytest.approx(holm(tested["wilcoxon_p"]).tolist())


def test_tables_read_back_from_the_store_give_the_same_tests(tmp_path, study_tables):
    writer = ResultsWriter(tmp_path / "abl")
    for table, frame in study_tables.items():
        writer.write(table, frame)
    store = ResultsStore(str(tmp_path))
    stored = [store.read("abl", t) for t in ("fold_metrics", "predictions", "class_metrics")]
    from_store = ablation_tests(*stored, metrics=("macro_auroc",), n_boot=20)
    in_memory = ablation_tests(study_tables["fold_metrics"], study_tables["predictions"],
                               study_tables["class_metrics"], metrics=("macro_auroc",), n_boot=20)
    pd.testing.assert_frame_equal(from_store, in_memory)
    writer.write("ablation_tests", from_store)
    assert sorted(store.read("abl", "ablation_tests")["arm"]) == ["no-se", "twin"]


def test_an_arm_tested_on_other_records_is_refused():
    tables = _study_tables({"full": 2.0, "no-se": 1.0}, folds=1, seeds=1, n=60)
    predictions = tables["predictions"]
    moved = predictions["arm"] == "no-se"
    predictions.loc[moved, "record_id"] = predictions.loc[moved, "record_id"] + "x"
    with pytest.raises(ValueError, match="other records"):
        ablation_tests(tables["fold_metrics"], predictions, tables["class_metrics"], n_boot=10)
