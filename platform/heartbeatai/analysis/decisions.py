"""From estimates to decisions: one claim per comparison, Holm over each declared family.

A comparison (arm against `full`, on one metric, in one held-out domain or across them)
makes at most one claim, the one its estimate supports best:
- better / worse: the difference lies beyond the region of practical equivalence (ROPE) on
  that side: a one-sided t test of d <= +rope (or d >= -rope); the side is chosen from the
  data, so the smaller one-sided p is doubled;
- equivalent: the difference lies within the ROPE: 1 - P(-rope < d < rope) under the t
  confidence distribution, at least the two one-sided tests' p (TOST).
Either null is the complement of its claim, so whichever claim is tested, the error is
rejecting a true null, and Holm's step-down over a family keeps the probability of any false
claim in it at alpha = 1 - decision_probability (Holm 1979; the smaller of a comparison's
two p-values may stand in for it, since rejecting the false null is no error).

Families are declared, each controlled on its own: the confirmatory family is every arm's
across-domain comparison on the primary metric (the test-set counterpart of the selection
metric) in LODO; every other decision the table prints (other metrics, single domains) is
the exploratory family; the per-class comparisons of the rare-class heat map (class_tests)
are a family of their own per class metric across domains, and the same comparisons on each
held-out domain alone another (arms x classes x domains: wide, exploratory). Algorithm arms
(each algorithm against `full`, the ERM configuration) form their own two families, split
the same way: a zoo of a dozen algorithms must not take power from the paper's component
claims, nor should listing one more algorithm change a component ablation's decision. A comparison whose
arm is identical to `full` on a fold (the same resolved configuration) is marked
"identical" and kept out of every family.

Monte Carlo: the record variance comes from B bootstrap replicates, so it carries a relative
error of about sqrt(2 / (B - 1)). Every adjusted p is recomputed with all record variances
scaled by 1 -/+ twice that; where the decision differs between the two ends it is reported
as "at the threshold" rather than on either side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

from heartbeatai.arms import is_algorithm
from heartbeatai.results.schema import FAMILIES

if TYPE_CHECKING:  # a type only: ablation_stats brings scipy.stats, which the dashboard's first page does not need
    from heartbeatai.analysis.ablation_stats import Estimate

CLAIMS = ("better", "worse", "equivalent")
CONFIRMATORY, EXPLORATORY, ALGORITHMS_CONFIRMATORY, ALGORITHMS_EXPLORATORY, PER_CLASS, PER_CLASS_DOMAIN = FAMILIES
AT_THRESHOLD, IDENTICAL, UNDECIDED = "at the threshold", "identical", "undecided"


def claim_of(estimate: Estimate, rope: float) -> tuple[str, float]:
    """The claim the estimate supports best and its p-value (nan where there is no estimate)."""
    confidence = estimate.confidence(rope)
    if not np.isfinite(confidence["p_better"]):
        return UNDECIDED, float("nan")
    direction = "better" if confidence["p_better"] >= confidence["p_worse"] else "worse"
    p_direction = min(1.0, 2.0 * (1.0 - max(confidence["p_better"], confidence["p_worse"])))
    p_equivalent = 1.0 - confidence["p_equivalent"]
    return (direction, p_direction) if p_direction <= p_equivalent else ("equivalent", p_equivalent)


def family_of(arm: str, confirmatory: bool) -> str:
    """The declared family of an arm's comparison: the algorithms' apart from the components'."""
    if is_algorithm(arm):
        return ALGORITHMS_CONFIRMATORY if confirmatory else ALGORITHMS_EXPLORATORY
    return CONFIRMATORY if confirmatory else EXPLORATORY


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values; nan entries stay nan and do not count in the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        # Holm (1979) step-down: the i-th smallest of m p-values times (m - i + 1), made
        # monotone, capped at 1. Written out rather than statsmodels' multipletests, which
        # runs gc.collect() on every Holm call (0.17 s each in a process holding torch);
        # tests/test_decisions.py checks it against multipletests.
        values = p[finite]
        order = np.argsort(values, kind="stable")
        m = len(values)
        stepped = np.minimum(1.0, np.maximum.accumulate(values[order] * np.arange(m, 0, -1)))
        adjusted = np.empty(m)
        adjusted[order] = stepped
        out[finite] = adjusted
    return out


def mc_variance_factor(n_boot: int) -> float:
    """Twice the relative standard error of a variance estimated from n_boot replicates."""
    return 2.0 * float(np.sqrt(2.0 / max(n_boot - 1, 1)))


def decide(row: Mapping, decision_probability: float) -> str:
    """A stored comparison's decision at `decision_probability` (alpha = 1 - it), from its claim and
    its Holm-adjusted p with the Monte Carlo band ([p_holm_low, p_holm_high])."""
    claim, p = row.get("claim"), row.get("p_holm")
    if claim == IDENTICAL:
        return IDENTICAL
    if not isinstance(claim, str) or claim not in CLAIMS or p is None or not np.isfinite(p):
        return UNDECIDED
    alpha = 1.0 - decision_probability
    low, high = row.get("p_holm_low", p), row.get("p_holm_high", p)
    low = p if low is None or not np.isfinite(low) else low
    high = p if high is None or not np.isfinite(high) else high
    if low <= alpha < high:
        return AT_THRESHOLD
    return claim if p <= alpha else UNDECIDED
