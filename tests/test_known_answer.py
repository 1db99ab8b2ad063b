"""The known-answer study (studies/configs/known_answer.yaml, benchmarks/bench_known_answer.py).

Fast: the config plants what it says (a style shift and the age shortcut; the arm is a real
change of the trained model, not a copy of `full`) and the verdicts read the study's own
decision the right way round. Slow: the study run end to end in this process (real training
loop, FakeStageRunner for the scheduling), with the shortcut and without: it must decide
`full` better than `demographics` with it (the effect was measured outside the study first:
docs/synthetic.md, Known-answer study), and must not decide `demographics` better without it.
"""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.bench_known_answer import ARM, known_answer_config, run_known_answer, verdict
from heartbeatai.config import TrialConfig


def test_the_config_plants_a_style_shift_and_an_age_shortcut_and_an_arm_that_changes_the_model(tmp_path):
    config = known_answer_config(seed=3, storage=tmp_path)
    spec = config.data.synthetic
    assert spec.shift_kinds == ["style"] and spec.seed == 3 and spec.age_shortcut > 0
    assert known_answer_config(3, tmp_path, age_shortcut=0.0).data.synthetic.age_shortcut == 0
    assert config.arms == ["full", ARM] and config.protocols == ["lodo"]
    base = TrialConfig.model_validate(config.trial)
    arm = base.with_overrides(config.user_arms[ARM])
    assert arm != base and arm.model.demographics and not base.model.demographics


@pytest.mark.parametrize("argv", [["--effect-size", "--age-shortcut", "0,5"],
                                  ["--effect-size", "--age-shortcut", "0,x"], ["--age-weights", "-1"]])
def test_a_strength_outside_the_knobs_range_is_one_line_before_anything_is_generated(argv, capsys):
    from benchmarks.bench_known_answer import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and err[-1].startswith("python -m benchmarks known_answer: error: argument --")
    assert "Traceback" not in "\n".join(err)


def _tests(decision: str, diff: float) -> pd.DataFrame:
    return pd.DataFrame([{"scope": "across", "metric": "macro_auroc", "arm": ARM, "decision": decision,
                          "diff": diff, "diff_lo": diff - 0.01, "diff_hi": diff + 0.01,
                          "p_better": 0.0, "p_worse": 0.0}])


@pytest.mark.parametrize("decision, benefit, null", [
    ("worse", True, True), ("undecided", False, True), ("equivalent", False, True), ("better", False, False),
])
def test_verdicts_follow_the_studys_own_decision_for_arm_minus_full(decision, benefit, null):
    tests = _tests(decision, -0.02)
    assert verdict(tests, "macro_auroc", "benefit")["recovered"] is benefit
    assert verdict(tests, "macro_auroc", "null")["recovered"] is null


def _run(tmp_path_factory, age_shortcut):
    import torch

    torch.set_num_threads(1)
    return run_known_answer(0, tmp_path_factory.mktemp("known-answer"), age_shortcut=age_shortcut)


@pytest.mark.slow
def test_the_known_answer_study_finds_the_planted_age_shortcut(tmp_path_factory):
    found = verdict(_run(tmp_path_factory, None), "macro_auroc", "benefit")
    assert found["recovered"], found


@pytest.mark.slow
def test_the_known_answer_study_keeps_its_planted_null(tmp_path_factory):
    kept = verdict(_run(tmp_path_factory, 0.0), "macro_auroc", "null")
    assert kept["recovered"], kept
