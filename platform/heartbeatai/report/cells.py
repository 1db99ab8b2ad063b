"""What a report's cell says: a figure with its interval, or why it has none.

Every table of the report prints an estimate the one way, ``0.812 [0.790, 0.833]``, and a
cell whose interval may not be read says so instead of showing a band: fewer test positives
than the study's minimum (``0.41 (3 pos., no interval)``), or too few seeds or domains to
estimate the spread. The CSV beside each table keeps the numbers (value, low, high).

Seed-averaged figures (a held-out domain's metric over an arm's seeds) carry the noise model
of the ablation tests (analysis/ablation_stats.py): the record bootstrap's variance, read off
each seed's percentile interval, plus the seeds' spread, with a Welch-Satterthwaite t; the
seeds share the test records, so the record variance of their mean is taken at its upper
bound, the square of the mean per-seed SE (perfectly correlated seeds). Across held-out
domains, the same random-effects pooling with the modified Knapp-Hartung t.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from heartbeatai.analysis.ablation_stats import MIN_SEEDS_FOR_SEED_VARIANCE, Estimate, across_domains

LEVEL = 0.95
NO_VALUE = "n/a"


def finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def interval_cell(value, low=None, high=None, *, reliable: bool = True, positives=None,
                  digits: int = 3, signed: bool = False, why: str | None = None) -> str:
    """"0.812 [0.790, 0.833]", or the value with the reason it has no interval."""
    if not finite(value):
        return NO_VALUE
    fmt = f"{'+' if signed else ''}.{digits}f"
    shown = f"{float(value):{fmt}}"
    if reliable and finite(low) and finite(high):
        return f"{shown} [{float(low):{fmt}}, {float(high):{fmt}}]"
    if why is None:
        why = f"{int(positives)} pos., no interval" if finite(positives) else "no interval"
    return f"{shown} ({why})"


def number_cell(value, digits: int = 3) -> str:
    return f"{float(value):.{digits}f}" if finite(value) else NO_VALUE


def p_cell(value) -> str:
    if not finite(value):
        return NO_VALUE
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _record_se(low: float, high: float, level: float) -> float:
    """The SE a percentile interval implies, read as a normal one."""
    return (high - low) / (2 * stats.norm.ppf(0.5 + level / 2))


def seed_pooled(values: Sequence[float], lows: Sequence[float], highs: Sequence[float],
                level: float = LEVEL) -> Estimate:
    """The mean of one figure over an arm's seeds on one held-out domain, with its noise.

    ``lows``/``highs``: each seed's record-bootstrap interval (NaN where none was drawn);
    a seed without one leaves the record variance unknown, and so the interval.
    """
    values, lows, highs = (np.asarray(a, dtype=float) for a in (values, lows, highs))
    keep = np.isfinite(values)
    values, lows, highs = values[keep], lows[keep], highs[keep]
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), float("nan"), 0.0, 0.0, True, 0)
    ses = _record_se(lows, highs, level)
    record_variance = float(np.mean(ses) ** 2) if np.all(np.isfinite(ses)) else float("nan")
    conditional = n < MIN_SEEDS_FOR_SEED_VARIANCE
    seed_variance = 0.0 if conditional else float(np.var(values, ddof=1) / n)
    return Estimate(float(values.mean()), record_variance, seed_variance, float(n - 1), conditional, n)


def pooled_across(estimates: Sequence[Estimate]) -> Estimate:
    """The domains' figures pooled: random effects, modified Knapp-Hartung (ablation_stats)."""
    with warnings.catch_warnings():  # statsmodels' I^2 divides by zero where tau^2 is 0: not read here
        warnings.simplefilter("ignore", RuntimeWarning)
        return across_domains(list(estimates))


def estimate_interval(estimate: Estimate, level: float = LEVEL,
                      bounds: tuple[float, float] = (float("-inf"), float("inf"))) -> tuple[float, float]:
    """The estimate's interval, clipped to the values the figure can take: a t interval of a
    bounded metric near its bound otherwise reaches past it (an AUROC above 1), and clipping
    keeps every value the interval covered that the metric can have."""
    if not finite(estimate.record_variance):
        return float("nan"), float("nan")
    low, high = estimate.interval(level)
    return (max(low, bounds[0]), min(high, bounds[1])) if finite(low) else (low, high)
