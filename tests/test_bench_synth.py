"""`python -m benchmarks synth --learnability --set KEY=VALUE`: changes to the demo's trial reach
the probe, and a bad one is one line before anything is generated or trained. With
`--acquisition-gap`, they change every algorithm's trial but ERM's (the reference's yardstick)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_synth
from benchmarks.synth_probes import _trial


def test_set_changes_the_demos_trial_and_epochs_still_apply():
    trial = _trial(12, {"model.kernel": 9, "model.depths": [2, 2, 2]})
    assert (trial.model.kernel, trial.model.depths, trial.optim.epochs) == (9, (2, 2, 2), 12)
    assert _trial(None).model.kernel != 9  # the demo's own


def test_a_bad_set_is_one_line_and_trains_nothing(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("generated a benchmark for a trial that does not validate")

    monkeypatch.setattr("heartbeatai.data.synthetic.write_benchmark", refuse)  # the probe imports it when it runs
    assert bench_synth.main(["--learnability", "--set", "model.kernal=9"]) == 2
    assert "did you mean 'kernel'" in capsys.readouterr().err
    assert bench_synth.main(["--learnability", "--set", "model.kernel"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_acquisition_gap_sets_the_algorithms_trials_and_leaves_erms(capsys, monkeypatch):
    import pandas as pd

    from heartbeatai.study.study_config import load_study_config

    seen = {}

    def record(n, trials, **kwargs):
        seen.update(trials)
        return pd.DataFrame({"held_out": ["cpsc"], "model": ["erm"], "auroc_RBBB": [1.0], "macro_auroc": [0.9]})

    monkeypatch.setattr("benchmarks.synth_probes.acquisition_gap", record)
    argv = ["--acquisition-gap", "1", "--algorithms", "mmd,coral", "--set", "algorithm.penalty_weight=0.04"]
    assert bench_synth.main(argv) == 0
    assert seen["mmd"].algorithm.penalty_weight == seen["coral"].algorithm.penalty_weight == 0.04
    zoo = load_study_config(Path(bench_synth.__file__).resolve().parents[1] / "studies" / "configs" / "dg_zoo.yaml")
    assert seen["erm"] == zoo.algorithm_base("erm")  # the reference's trial as the zoo ships it
    assert bench_synth.main([*argv[:3], "dann", "--set", "algorithm.penalty_weight=0.04"]) == 2  # DANN has none
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("--set: ")


def test_threshold_rules_call_the_prevalence_share_or_the_f1_optimum_by_validation_positives():
    import numpy as np

    from benchmarks.synth_probes import rule_thresholds

    rng = np.random.default_rng(0)
    scores = rng.random((200, 2))
    y = np.zeros((200, 2), bool)
    y[np.argsort(-scores[:, 0])[:20], 0] = True  # class 0: 20 positives, perfectly ranked
    y[np.argsort(-scores[:, 1])[:2], 1] = True  # class 1: 2 positives
    rules = rule_thresholds(y, scores, np.array([0.05, 0.25]), min_positives=(5,))
    f1_optimal, prevalence = rules["F1-optimal (the platform's)"], rules["training prevalence"]
    # F1-optimal: exactly the positives called (perfect ranking)
    assert ((scores >= f1_optimal) == y).all()
    # prevalence: the training share of the validation records called positive
    assert ((scores >= prevalence).sum(axis=0) == [10, 50]).all()
    hybrid = rules["F1-optimal at >= 5 validation positives"]
    assert hybrid[0] == f1_optimal[0] and hybrid[1] == prevalence[1]
