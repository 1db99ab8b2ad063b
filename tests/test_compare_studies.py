"""`python -m benchmarks.compare_studies`: two copies of a study are identical whatever Ray named
their trials; one changed prediction is found and named."""

from __future__ import annotations

import shutil

from benchmarks.compare_studies import main
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.testing.fake_store import make_store


def test_copies_are_identical_and_a_changed_prediction_is_named(tmp_path, capsys):
    make_store(tmp_path / "a", n_folds=2, n_trials=4, classes=4, seeds=1, records_per_fold=8, record_views_per_fold=1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    store = ResultsStore(str(tmp_path / "b"))
    predictions = store.read("demo", "predictions")
    # Ray names trials per run: another run's trial ids must not matter.
    shutil.rmtree(tmp_path / "b" / "demo" / "results" / "predictions")
    ResultsWriter(tmp_path / "b" / "demo").write("predictions", predictions.assign(trial_id="other-run"))
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip().endswith("identical")

    probability = next(c for c in predictions.columns if c.startswith("p_"))
    changed = predictions.copy()
    changed.loc[0, probability] = changed.loc[0, probability] + 0.25
    shutil.rmtree(tmp_path / "b" / "demo" / "results" / "predictions")
    ResultsWriter(tmp_path / "b" / "demo").write("predictions", changed)
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert f"float gaps: {probability} 2.5e-01" in out and out.strip().endswith("NOT identical")
