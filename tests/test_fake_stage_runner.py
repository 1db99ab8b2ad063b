"""The in-process fake stage runners: what the policy tests rely on them to mimic of Ray Tune and of training."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from heartbeatai.metric_names import EPOCH_COLUMNS
from heartbeatai.study.stage_runner import FoldContext
from heartbeatai.testing.fake_stage_runner import _SuccessiveHalving
from heartbeatai.testing.planted_stage_runner import PlantedCheckpoints, plant_trial

TESTS = Path(__file__).parent


@pytest.mark.parametrize("max_t, grace, eta", [(10, 1, 2), (9, 1, 3), (2, 1, 2), (8, 2, 2)])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_early_stopping_follows_rays_asha_bracket(max_t, grace, eta, mode):
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = np.random.default_rng(max_t * 10 + grace + eta)
    sign = 1.0 if mode == "max" else -1.0
    ray_bracket = _Bracket(grace, max_t, eta, 0)
    fake = _SuccessiveHalving(max_t, grace, eta, sign, {})
    stopped = 0
    for t in range(20):
        trial = SimpleNamespace(trial_id=f"t{t}")
        for epoch in range(1, max_t):
            value = float(rng.normal())
            ray_stops = ray_bracket.on_result(trial, epoch, sign * value) == "STOP"
            assert fake.stops(trial.trial_id, epoch, value) == ray_stops, (t, epoch)
            if ray_stops:
                stopped += 1
                break
    assert stopped > 0


def test_a_study_against_the_planted_runner_imports_neither_ray_nor_torch(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ray"] = None  # any `import ray` now fails
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from heartbeatai.results import ResultsStore
        from heartbeatai.study.study_run import start_study
        from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
        from study_fixtures import tiny_study
        from train_fixtures import write_planted_dataset

        tmp = Path({str(tmp_path)!r})
        data = write_planted_dataset(tmp / "data", records_per_domain=24)
        config = tiny_study(data, tmp / "runs", name="notorch", selection={{"oracle": True}}, record_views=1)
        start_study(config, progress=lambda _: None, stage_runner=PlantedStageRunner(tmp / "fake"))
        tested = ResultsStore(str(tmp / "runs")).read("notorch", "fold_metrics")
        views = ResultsStore(str(tmp / "runs")).read("notorch", "record_views")
        print("tested", sorted(set(zip(tested["arm"], tested["selection"]))), "views", len(views))
        print("torch imported:", sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tested [('full', 'val'), ('prevalence', 'val'), ('search', 'oracle'), ('search', 'val')] views 1" in run.stdout
    assert "torch imported: []" in run.stdout, run.stdout


# -- the planted epochs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fold(tmp_path_factory) -> FoldContext:
    from train_fixtures import CLASSES, FOLD, tiny_trial, write_planted_dataset

    data = write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=24)
    return FoldContext(study="planted", protocol="lodo", fold_id=FOLD, data_path=str(data), classes=CLASSES,
                       base_trial=tiny_trial(), metric="val_macro_auroc", mode="max")


def _planted(fold: FoldContext, overrides: dict, keep: Path | None = None, resume: Path | None = None) -> list[dict]:
    """The reports of a planted trial; with `keep`, each epoch's checkpoint copied there."""
    reports = []

    def report(metrics, checkpoint_dir):
        reports.append(metrics)
        if keep is not None:
            shutil.copytree(checkpoint_dir, keep / f"epoch-{metrics['epoch']}")

    plant_trial(fold.trial_config(overrides), fold, report, resume)
    return reports


def _values(reports: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in reports]


def test_planted_epochs_repeat_and_move_with_the_sampled_values_and_the_seed(fold):
    first = _planted(fold, {"mixstyle.p": 0.3})
    assert [r["epoch"] for r in first] == [1, 2] and set(first[0]) == set(EPOCH_COLUMNS)
    assert _values(_planted(fold, {"mixstyle.p": 0.3})) == _values(first)
    for other in ({"mixstyle.p": 0.31}, {"mixstyle.p": 0.3, "seed": 7}, {"mixstyle.p": 0.3, "model.se": False}):
        assert _values(_planted(fold, other)) != _values(first), other
    aurocs = [r["val_macro_auroc"] for p in np.linspace(0, 1, 12) for r in _planted(fold, {"mixstyle.p": p})]
    assert np.ptp(aurocs) > 0.1  # enough spread for ASHA to stop some and the selection to choose


def test_a_resumed_planted_trial_reports_what_an_uninterrupted_one_does(fold, tmp_path):
    straight = _planted(fold, {"loss.kind": "focal"}, keep=tmp_path)
    resumed = _planted(fold, {"loss.kind": "focal"}, resume=tmp_path / "epoch-1")
    assert _values(resumed) == _values(straight[1:])


def test_a_planted_checkpoint_scores_validation_records_as_its_epoch_reported(fold, tmp_path):
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.data.prepared import PreparedDataset
    from heartbeatai.metrics import evaluate_predictions

    reports = _planted(fold, {"label_smoothing": 0.1}, keep=tmp_path)
    val_ids = fold_records(read_folds(fold.data_path, "lodo")[0], fold.fold_id)["val"]
    dataset = PreparedDataset(fold.data_path)
    labels = dataset.labels(list(fold.classes))[dataset.index_of(val_ids)]
    for report in reports:
        ids, probs, thresholds = PlantedCheckpoints().predict(str(tmp_path / f"epoch-{report['epoch']}"),
                                                              Path(fold.data_path), list(reversed(val_ids)))
        assert ids == list(reversed(val_ids)) and probs.shape == (len(val_ids), len(fold.classes))
        macro = evaluate_predictions(labels[::-1], probs, thresholds, list(fold.classes)).macro
        assert macro["macro_auroc"] == pytest.approx(report["val_macro_auroc"])
        assert macro["macro_f1"] == pytest.approx(report["val_macro_f1"])
