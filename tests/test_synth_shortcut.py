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
    common = dict(domains=DOMAINS, shift=1.0, shift_kinds=["style"], fs=100, seconds=3.0, seed=7)  # short: ages are measured, signals only compared
    return generate(N, age_shortcut=1.0, **common), generate(N, **common)


def _age_coefficients(ages: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Least-squares age = a + labels @ b, by numpy's own solver: b per class, in years."""
    design = np.column_stack([np.ones(len(ages)), labels.astype(float)])
    return np.linalg.lstsq(design, ages.astype(float), rcond=None)[0][1:]


def test_every_class_is_turned_round_in_exactly_one_hospital_and_each_hospital_turns_its_share():
    classes = [f"C{i}" for i in range(10)]
    offsets = age_offsets(DOMAINS, classes, 2.0, seed=3)
    table = np.array([[offsets[d][c] for c in classes] for d in DOMAINS])  # (domains, classes)
    assert set(np.abs(table).ravel()) == {2.0}
    reversed_in = [int(np.argmin(table[:, j] * np.sign(np.median(table[:, j])))) for j in range(len(classes))]
    for j, k in enumerate(reversed_in):  # the other hospitals agree; the reversing one says the opposite
        others = np.delete(table[:, j], k)
        assert len(set(others)) == 1 and table[k, j] == -others[0]
    assert sorted(np.bincount(reversed_in, minlength=len(DOMAINS))) == [2, 2, 3, 3]  # dealt round-robin
    assert sorted(np.sign(np.median(table, axis=0))) == [-1.0] * 5 + [1.0] * 5  # half older, half younger
    assert age_offsets(DOMAINS, classes, 2.0, seed=4) != offsets
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
    assert unclipped.mean() > 0.6
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


def test_the_training_hospitals_agree_where_the_held_out_one_turns_the_association_round(with_and_without):
    shortcut, _ = with_and_without
    planted = shortcut.domain_params
    checked = 0
    for held_out in DOMAINS:
        inside = shortcut.domains == held_out
        common = (shortcut.labels[inside].sum(axis=0) >= 40) & (shortcut.labels[~inside].sum(axis=0) >= 120)
        names = [c for c, keep in zip(shortcut.classes, common) if keep]
        test = _age_coefficients(shortcut.ages[inside], shortcut.labels[inside][:, common])
        train = _age_coefficients(shortcut.ages[~inside], shortcut.labels[~inside][:, common])
        for name, on_test, on_train in zip(names, test, train):
            others = [planted[d]["age_offsets"][name] for d in DOMAINS if d != held_out]
            if len(set(others)) == 1:  # this hospital reverses the class: every training one agrees
                assert np.sign(on_train) == np.sign(others[0]) == -np.sign(on_test), (held_out, name)
                checked += 1
    assert checked >= 2


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
