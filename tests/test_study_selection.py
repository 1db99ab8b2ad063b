"""Model selection, the sealed test split and the study lock; every validation metric selects."""

from __future__ import annotations

import pandas as pd
import pytest

from heartbeatai.config import TrialConfig, flatten_config
from heartbeatai.metric_names import VALIDATION_METRICS, metric_mode
from heartbeatai.results import ResultsStore
from heartbeatai.study.lock import StageJournal, StudyLock, StudyLocked
from heartbeatai.study.sealed_split import PeekingError, SealedSplit
from heartbeatai.study.selection import SelectionError, TestDomainOracle, TrainingDomainValidation, config_of_row


def trial_row(trial_id, status, value, **cfg):
    base = TrialConfig().with_overrides(cfg)
    flat = {f"cfg.{k}": (str(v).replace("'", '"') if isinstance(v, list) else v)
            for k, v in flatten_config(base).items()}
    return {"trial_id": trial_id, "status": status, "selection_value": value, "selection_metric": "val_macro_auroc",
            "checkpoint_path": None if value is None else f"/ckpt/{trial_id}", **flat}


def test_validation_selection_takes_the_best_finished_trial_including_asha_stopped():
    trials = pd.DataFrame([
        trial_row("a", "completed", 0.70, **{"mixstyle.p": 0.1}),
        trial_row("b", "early_stopped", 0.80, **{"mixstyle.p": 0.2, "loss.kind": "bce"}),
        trial_row("c", "errored", None),
        trial_row("d", "running", 0.95),
    ])
    chosen = TrainingDomainValidation().select(trials, TrialConfig(), "max")
    assert chosen.trial_id == "b" and chosen.value == pytest.approx(0.80)
    assert chosen.trial.mixstyle.p == pytest.approx(0.2) and chosen.trial.loss.kind == "bce"
    assert TrainingDomainValidation().select(trials, TrialConfig(), "min").trial_id == "a"


def test_the_latest_row_of_a_trial_decides():
    trials = pd.DataFrame([trial_row("a", "completed", 0.9), trial_row("a", "errored", None),
                           trial_row("b", "completed", 0.6)])
    assert TrainingDomainValidation().select(trials, TrialConfig(), "max").trial_id == "b"


def test_selection_without_a_finished_trial_is_an_error():
    with pytest.raises(SelectionError):
        TrainingDomainValidation().select(pd.DataFrame([trial_row("c", "errored", None)]), TrialConfig(), "max")


def test_oracle_picks_by_test_scores_only():
    trials = pd.DataFrame([trial_row("a", "completed", 0.9), trial_row("b", "completed", 0.6)])
    oracle = TestDomainOracle().select({"a": 0.55, "b": 0.71}, trials, TrialConfig(), "macro_auroc", "max")
    assert oracle.trial_id == "b" and oracle.metric == "macro_auroc"


def test_config_of_row_round_trips_list_fields():
    cfg = TrialConfig().with_overrides({"model.widths": [8, 16, 32, 64], "optim.lr": 0.003})
    row = pd.Series(trial_row("a", "completed", 0.5, **{"model.widths": [8, 16, 32, 64], "optim.lr": 0.003}))
    assert config_of_row(row, TrialConfig()) == cfg


def test_test_ids_are_released_only_after_the_selection_is_recorded(tmp_path):
    folds = pd.DataFrame({"fold_id": ["lodo:x"] * 4, "record_id": ["r1", "r2", "r3", "r4"],
                          "split": ["train", "val", "test", "test"], "reason": [None] * 4})
    split = SealedSplit.from_folds(folds, "lodo:x")
    journal = StageJournal(tmp_path)
    assert split.train_ids == ("r1",) and split.val_ids == ("r2",) and split.n_test == 2
    with pytest.raises(PeekingError):
        split.release_test(journal)
    journal.mark("lodo:x", "selection", {"trial_id": "a"})
    assert split.release_test(StageJournal(tmp_path)) == ["r3", "r4"]  # the mark is durable


def test_a_second_writer_is_refused(tmp_path):
    with StudyLock(tmp_path):
        with pytest.raises(StudyLocked, match="another process"):
            with StudyLock(tmp_path):
                pass
    with StudyLock(tmp_path):  # released on exit
        pass


# -- a fold's search and selection, in-process ------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from train_fixtures import write_planted_dataset

    return write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=24)


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_every_validation_metric_selects_the_best_checkpoint_in_its_own_direction(planted, tmp_path, metric):
    from heartbeatai.study.study_run import StudyPaths, fold_runners
    from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
    from study_fixtures import tiny_study

    config = tiny_study(planted, tmp_path / "runs", name="by-metric", search={"trials_per_fold": 3},
                        selection={"metric": metric, "oracle": False})
    assert config.selection.mode == metric_mode(metric)
    (runner,) = fold_runners(config, StudyPaths(tmp_path / "runs" / "by-metric"), progress=print,
                             stage_runner=PlantedStageRunner(tmp_path / "fake"))
    runner.search_and_select()

    store = ResultsStore(str(tmp_path / "runs"))
    trials = store.read("by-metric", "trials").drop_duplicates("trial_id", keep="last").set_index("trial_id")
    epochs = store.read("by-metric", "epochs")
    best = max if metric_mode(metric) == "max" else min
    for trial_id, curve in epochs.groupby("trial_id"):
        row = trials.loc[trial_id]
        assert row["selection_metric"] == metric
        assert row["selection_value"] == pytest.approx(best(curve[metric]))
        # On ties the later epoch, as Ray's checkpoint manager keeps the later of equal scores.
        best_epoch = int(curve.loc[curve[metric] == row["selection_value"], "epoch"].iloc[-1])
        assert row["best_epoch"] == best_epoch
        assert row["checkpoint_path"].endswith(f"checkpoint_{best_epoch:06d}")  # the kept best, not the last
    selection = runner.journal.get(runner.fold_id, "selection")
    assert selection["metric"] == metric
    assert selection["value"] == pytest.approx(best(trials["selection_value"]))
    assert trials.loc[selection["trial_id"], "selection_value"] == pytest.approx(selection["value"])
    # ASHA (grace 1, reduction 2) stops a trial that reports worse than the first at epoch 1.
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    importances = store.read("by-metric", "importances")
    assert not importances.empty and set(importances["param"]) <= set(config.search.space)
    distinct = len(trials.drop_duplicates([f"cfg.{p}" for p in config.search.space]))
    assert set(importances["n_distinct_trials"]) == {distinct}  # what they rest on


def test_the_oracle_scores_macro_auprc_over_the_classes_fold_metrics_averages():
    """The oracle ranks trials by the figure it is reported with: macro AUPRC over the classes
    with at least 10 test positives, not every present class (computed here with scikit-learn)."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    from heartbeatai.metrics import evaluate_predictions
    from heartbeatai.study.fold_runner import _test_figure

    rng = np.random.default_rng(0)
    y = np.zeros((120, 3), bool)
    for c, positives in enumerate((3, 12, 40)):
        y[rng.choice(120, positives, replace=False), c] = True
    scores = np.clip(rng.random(y.shape) * 0.6 + 0.4 * y, 0, 1)
    result = evaluate_predictions(y, scores, np.full(3, 0.5), ["AF", "RBBB", "PAC"])
    expected = np.mean([average_precision_score(y[:, c], scores[:, c]) for c in (1, 2)])
    assert _test_figure(result, y, "macro_auprc") == pytest.approx(expected)
    assert _test_figure(result, y, "macro_auroc") == result.macro["macro_auroc"]
