"""The known-answer study (studies/configs/known_answer.yaml, benchmarks/bench_known_answer.py).

Fast: the config plants what it says (style shift only; the null arm is a real change of
the trained model, not a copy of `full`) and the verdicts read the across-fold rows the
right way round. Slow: the study run end to end in this process (real training loop,
FakeStageRunner for the scheduling) keeps its planted null; whether it detects the planted
MixStyle benefit is an expected failure, see docs/synthetic.md, "Known-answer study".
"""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.bench_known_answer import EFFECT_ARM, NULL_ARM, known_answer_config, run_known_answer, verdicts
from heartbeatai.config import TrialConfig


def test_the_config_plants_a_style_shift_alone_and_a_null_arm_that_changes_the_model(tmp_path):
    config = known_answer_config(seed=3, storage=tmp_path)
    assert config.data.synthetic.shift_kinds == ["style"] and config.data.synthetic.seed == 3
    assert config.arms == ["full", EFFECT_ARM, NULL_ARM] and config.protocols == ["lodo"]
    base = TrialConfig.model_validate(config.trial)
    null = base.with_overrides(config.user_arms[NULL_ARM])
    assert base.mixstyle.p > 0 and "mixstyle.p" not in config.search.space  # planted, never searched
    assert null != base and null.model.demographics and not base.model.demographics


def _tests(effect: dict, null: dict) -> pd.DataFrame:
    rows = []
    for arm, figures in ((EFFECT_ARM, effect), (NULL_ARM, null)):
        rows.append({"scope": "across", "metric": "macro_auroc", "arm": arm, "p_better": 0.0, "p_worse": 0.0,
                     **figures})
    return pd.DataFrame(rows)


def test_verdicts_read_arm_minus_full_the_right_way_round():
    found = verdicts(_tests({"diff": -0.03, "diff_lo": -0.05, "diff_hi": -0.01, "p_worse": 0.97},
                            {"diff": 0.001, "diff_lo": -0.01, "diff_hi": 0.012, "p_better": 0.2}), "macro_auroc", 0.9)
    assert found[EFFECT_ARM]["recovered"] and found[NULL_ARM]["recovered"]
    missed = verdicts(_tests({"diff": 0.01, "diff_lo": -0.01, "diff_hi": 0.03, "p_worse": 0.1},
                             {"diff": 0.03, "diff_lo": 0.01, "diff_hi": 0.05, "p_better": 0.95}), "macro_auroc", 0.9)
    assert not missed[EFFECT_ARM]["recovered"] and not missed[NULL_ARM]["recovered"]


@pytest.fixture(scope="module")
def known_answer(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tests = run_known_answer(0, tmp_path_factory.mktemp("known-answer"))
    return verdicts(tests, "macro_auroc", known_answer_config(0, "unused").analysis.decision_probability)


@pytest.mark.slow
def test_the_known_answer_study_keeps_its_planted_null(known_answer):
    assert known_answer[NULL_ARM]["recovered"], known_answer[NULL_ARM]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: MixStyle lowers LODO macro AUROC on this benchmark's style shift "
                                       "(docs/synthetic.md, Known-answer study); strict, so a benchmark that plants "
                                       "a shift MixStyle undoes turns this into a failure to remove the mark")
def test_the_known_answer_study_detects_the_planted_mixstyle_benefit(known_answer):
    assert known_answer[EFFECT_ARM]["recovered"], known_answer[EFFECT_ARM]
