"""The multiplicity rule's Holm adjustment against statsmodels' reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from heartbeatai.analysis.decisions import holm


@pytest.mark.parametrize("m", [1, 2, 7, 60])
def test_holm_equals_statsmodels_with_ties_and_nan_left_out(m):
    rng = np.random.default_rng(m)
    p = rng.choice([0.001, 0.01, 0.02, 0.04, 0.3, 0.9], size=m) if m > 2 else rng.random(m) ** 3
    with_nan = np.insert(p, 0, np.nan)
    got = holm(with_nan)
    assert np.isnan(got[0])  # a comparison without a p does not count in the family
    np.testing.assert_allclose(got[1:], multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_holm_of_nothing_finite_is_all_nan():
    assert np.isnan(holm(np.array([np.nan, np.nan]))).all()
