"""The spurious age shortcut (data/synthetic/shortcut.py): its strength is what the config says,
its association reverses between every LODO fold's training and held-out domains, and it
moves the recorded age and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from heartbeatai.data.synthetic import generate
from heartbeatai.data.synthetic.shortcut import age_offsets

DOMAINS = ["cpsc", "ptbxl", "georgia", "chapman"]
N = 1200


@pytest.fixture(scope="module")
def with_and_without():
    common = dict(domains=DOMAINS, shift=1.0, shift_kinds=["style"], fs=100, seconds=10.0, seed=7)
    return generate(N, age_shortcut=1.0, **common), generate(N, **common)


def _age_coefficients(ages: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Least-squares age = a + labels @ b, by numpy's own solver: b per class, in years."""
    design = np.column_stack([np.ones(len(ages)), labels.astype(float)])
    return np.linalg.lstsq(design, ages.astype(float), rcond=None)[0][1:]


def test_the_offsets_reverse_between_any_held_out_domain_and_the_rest():
    offsets = age_offsets(DOMAINS, ["AF", "NSR", "PAC"], 2.0, seed=3)
    table = np.array([[offsets[d][c] for c in ("AF", "NSR", "PAC")] for d in DOMAINS])
    assert np.allclose(table.sum(axis=0), 0.0)  # centred over the hospitals
    assert set(np.round(np.abs(table), 9).ravel()) == {2.0}  # half older, half younger, by the strength
    for held_out in range(len(DOMAINS)):
        training = np.delete(table, held_out, axis=0).sum(axis=0)
        assert np.all(np.sign(training) == -np.sign(table[held_out]))
    assert age_offsets(DOMAINS, ["AF"], 0.0, seed=3) == {d: {} for d in DOMAINS}
    with pytest.raises(ValueError):
        age_offsets(DOMAINS, ["AF"], -1.0, seed=0)


def test_each_recorded_age_is_moved_by_its_classes_offsets(with_and_without):
    shortcut, plain = with_and_without
    planted = shortcut.domain_params
    moved = shortcut.ages.astype(float) - plain.ages
    expected = np.array([planted[d]["age_sd"] * sum(planted[d]["age_offsets"][c] for c, on in zip(shortcut.classes, row) if on)
                         for d, row in zip(shortcut.domains, shortcut.labels)])
    unclipped = (shortcut.ages > 18) & (shortcut.ages < 95)
    assert unclipped.mean() > 0.7
    assert np.all(np.abs(moved - expected)[unclipped] <= 0.5)  # rounded to whole years
    assert np.all(moved[~unclipped] * expected[~unclipped] >= 0)  # clipped, never turned round


def test_the_generated_ages_carry_the_planted_association_per_domain(with_and_without):
    shortcut, _ = with_and_without
    planted = shortcut.domain_params
    for domain in DOMAINS:
        rows = shortcut.domains == domain
        labels = shortcut.labels[rows]
        common = labels.sum(axis=0) >= 40  # enough records for the slope to be measured
        fitted = _age_coefficients(shortcut.ages[rows], labels[:, common])
        expected = np.array([planted[domain]["age_offsets"][c] for c, keep in zip(shortcut.classes, common) if keep])
        assert np.all(np.sign(fitted) == np.sign(expected)), (domain, fitted, expected)


def test_the_pooled_training_domains_show_the_reverse_of_the_held_out_one(with_and_without):
    shortcut, _ = with_and_without
    for held_out in DOMAINS:
        inside = shortcut.domains == held_out
        common = (shortcut.labels[inside].sum(axis=0) >= 40) & (shortcut.labels[~inside].sum(axis=0) >= 120)
        test = _age_coefficients(shortcut.ages[inside], shortcut.labels[inside][:, common])
        train = _age_coefficients(shortcut.ages[~inside], shortcut.labels[~inside][:, common])
        assert np.mean(np.sign(test) != np.sign(train)) >= 0.8, (held_out, test, train)


def test_only_the_recorded_age_moves(with_and_without):
    shortcut, plain = with_and_without
    assert np.array_equal(shortcut.labels, plain.labels) and np.array_equal(shortcut.header_labels, plain.header_labels)
    assert np.array_equal(shortcut.sexes, plain.sexes)
    assert all(np.array_equal(a, b) for a, b in zip(shortcut.signals, plain.signals))  # physiology: the true age
    assert not np.array_equal(shortcut.ages, plain.ages)
    # Without the shortcut the labels say nothing about age (the planted null).
    for domain in DOMAINS:
        rows = plain.domains == domain
        common = plain.labels[rows].sum(axis=0) >= 40
        fitted = _age_coefficients(plain.ages[rows], plain.labels[rows][:, common])
        assert np.all(np.abs(fitted) < 0.5 * plain.domain_params[domain]["age_sd"])
