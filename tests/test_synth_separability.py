"""The synthetic domains differ where the model looks: after the study's own
preprocessing (100 Hz, the default 0.5-45 Hz band-pass and per-lead z-score over a 5 s
window), with only the style shift on (every domain at the same prevalences, so no
label gives a domain away), an independent scikit-learn classifier on features a CNN
can see (benchmarks/synth_probes.py) tells the four hospitals apart at shift 1 and
cannot at shift 0. `python -m benchmarks synth --separability` prints the figures."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synth_probes import domain_features, preprocess, separability
from heartbeatai.data.synthetic import generate


@pytest.mark.slow
def test_domains_are_recognisable_after_preprocessing_at_shift_one():
    result = separability(400, shift=1.0, seed=11)
    assert result["balanced_accuracy"] >= 0.9, result


@pytest.mark.slow
def test_domains_are_indistinguishable_at_shift_zero():
    result = separability(400, shift=0.0, seed=11)
    assert abs(result["balanced_accuracy"] - result["chance"]) <= 0.1, result


def test_per_lead_gain_alone_is_invisible_to_the_classifier():
    # the z-score removes a per-lead gain exactly: features of a rescaled record are its own
    record = generate(1, fs=100, seconds=10.0, seed=3).signals[0]
    gains = np.random.default_rng(0).uniform(0.5, 2.0, size=12).astype(np.float32)
    np.testing.assert_allclose(domain_features(preprocess(record * gains, 100, 5.0), 100),
                               domain_features(preprocess(record, 100, 5.0), 100), atol=1e-3)


def test_style_only_data_has_the_same_prevalences_in_every_domain():
    # what makes the separability a measure of acquisition style, not of labels
    data = generate(400, shift=1.0, shift_kinds=("style",), fs=100, seconds=2.0, seed=5)
    shares = np.stack([data.labels[data.domains == d].mean(axis=0) for d in sorted(set(data.domains))])
    assert np.abs(shares - shares.mean(axis=0)).max() < 0.12
