"""`python -m benchmarks synth --learnability --set KEY=VALUE`: changes to the demo's trial reach
the probe, and a bad one is one line before anything is generated or trained."""

from __future__ import annotations

from benchmarks import bench_synth
from benchmarks.synth_probes import _trial


def test_set_changes_the_demos_trial_and_epochs_still_apply():
    trial = _trial(12, {"model.kernel": 9, "model.depths": [2, 2, 2]})
    assert (trial.model.kernel, trial.model.depths, trial.optim.epochs) == (9, (2, 2, 2), 12)
    assert _trial(None).model.kernel != 9  # the demo's own


def test_a_bad_set_is_one_line_and_trains_nothing(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("generated a benchmark for a trial that does not validate")

    monkeypatch.setattr("benchmarks.synth_probes.write_benchmark", refuse, raising=False)
    monkeypatch.setattr("heartbeatai.data.synthetic.write_benchmark", refuse)
    assert bench_synth.main(["--learnability", "--set", "model.kernal=9"]) == 2
    assert "did you mean 'kernel'" in capsys.readouterr().err
    assert bench_synth.main(["--learnability", "--set", "model.kernel"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
