"""The generated store the dashboard's tests and benchmark stand on."""

from __future__ import annotations

import json

import numpy as np

from heartbeatai.results import ResultsStore, schema
from heartbeatai.testing.fake_store import make_store


def test_the_synthetic_store_fills_every_table_readably(tmp_path):
    make_store(tmp_path, n_folds=2, n_trials=12, classes=6, seeds=1, records_per_fold=10, record_views_per_fold=2)
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
