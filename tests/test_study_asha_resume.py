"""ASHA's rungs survive a restored experiment: Tune saves no scheduler state, the study rebuilds it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from heartbeatai.study.tune_runner import ResumableASHA

EPOCHS = 8


def _asha(history=None) -> ResumableASHA:
    asha = ResumableASHA(time_attr="epoch", max_t=EPOCHS, grace_period=1, reduction_factor=2, history=history)
    asha.set_search_properties("val_macro_auroc", "max")
    return asha


def _run(asha, trial, curve, start=0) -> list[str]:
    """Report epochs start+1.. of `curve`; the decisions, up to the first STOP."""
    decisions, result = [], None
    for epoch, value in enumerate(curve[start:], start=start + 1):
        result = {"epoch": epoch, "val_macro_auroc": value}
        decisions.append(asha.on_trial_result(None, trial, result))
        if decisions[-1] == "STOP":
            break
    asha.on_trial_complete(None, trial, result)  # as Tune tells it when the trial ends
    return decisions


@pytest.mark.parametrize("seed", range(5))
def test_a_restored_asha_stops_the_trials_an_uninterrupted_one_stops(seed):
    rng = np.random.default_rng(seed)
    curves = {f"t{i}": list(np.cumsum(rng.normal(0.1, 0.1, EPOCHS))) for i in range(6)}
    trials = {t: SimpleNamespace(trial_id=t) for t in curves}

    straight, decided = _asha(), {}
    for t in curves:  # one trial at a time, as search.reproducible runs them
        straight.on_trial_add(None, trials[t])
        decided[t] = _run(straight, trials[t], curves[t])

    # Interrupted after t2's third epoch: t0, t1 finished, t2 restored from its checkpoint.
    ran = {"t0": len(decided["t0"]), "t1": len(decided["t1"]), "t2": min(3, len(decided["t2"]))}
    history = {t: [(e + 1, curves[t][e]) for e in range(n)] for t, n in ran.items()}
    restored = _asha(history)
    for t in ("t0", "t1", "t2"):
        restored.on_trial_add(None, trials[t])
    again = {"t2": decided["t2"][:ran["t2"]]}
    if "STOP" not in again["t2"]:  # it was still running: it continues from its checkpoint
        again["t2"] += _run(restored, trials["t2"], curves["t2"], ran["t2"])
    for t in ("t3", "t4", "t5"):
        restored.on_trial_add(None, trials[t])
        again[t] = _run(restored, trials[t], curves[t])
    assert again == {t: decided[t] for t in again}
    assert any("STOP" in d for d in decided.values())  # the case is not trivial
