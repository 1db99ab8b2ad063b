"""The spurious age shortcut (data/synthetic/shortcut.py): its strength is what the config says,
its association reverses between a LODO fold's training and held-out domains for the classes
the held-out one turns round, and it moves the recorded age and nothing else. Strength is
measured as what a classifier could read: how well the recorded age alone ranks each target
class (sklearn's AUROC), per hospital and pooled over a fold's training hospitals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from heartbeatai.data.synthetic import generate
from heartbeatai.data.synthetic.shortcut import MIDDLE, N_TARGETS, OLD, YOUNG, age_bands, reported_age

DOMAINS = ["cpsc", "ptbxl", "georgia", "chapman"]
N = 1200


@pytest.fixture(scope="module")
def with_and_without():
    common = dict(domains=DOMAINS, shift=1.0, shift_kinds=["style"], fs=100, seconds=3.0, seed=7)  # short: ages are measured, signals only compared
    return generate(N, age_shortcut=1.0, **common), generate(N, **common)


def _age_auroc(ages: np.ndarray, positives: np.ndarray) -> float:
    """How well the recorded age alone ranks a class (1: every positive older than every negative)."""
    return float(roc_auc_score(positives, ages))


def test_every_target_class_is_turned_round_in_exactly_one_hospital_and_each_hospital_turns_its_share():
    classes = ["NSR"] + [f"C{i}" for i in range(12)]
    bands = age_bands(DOMAINS, classes, 1.0, seed=3)
    targets = sorted(bands["cpsc"])
    assert len(targets) == N_TARGETS and "NSR" not in targets  # a band for every normal record would name nothing
    assert all(sorted(bands[d]) == targets for d in DOMAINS)
    table = np.array([[bands[d][c] for c in targets] for d in DOMAINS])  # (domains, targets)
    assert set(np.abs(table).ravel()) == {1.0}
    reversed_in = [int(np.argmin(table[:, j] * np.sign(table[:, j].sum()))) for j in range(len(targets))]
    for j, k in enumerate(reversed_in):  # the other hospitals agree; the reversing one says the opposite
        others = np.delete(table[:, j], k)
        assert len(set(others)) == 1 and table[k, j] == -others[0]
    assert np.bincount(reversed_in, minlength=len(DOMAINS)).tolist() == [N_TARGETS // len(DOMAINS)] * len(DOMAINS)
    assert sorted(np.sign(table.sum(axis=0))) == [-1.0] * (N_TARGETS // 2) + [1.0] * (N_TARGETS // 2)  # half old
    assert age_bands(DOMAINS, classes, 1.0, seed=4) != bands
    assert age_bands(DOMAINS, classes, 0.0, seed=3) == {d: {} for d in DOMAINS}
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            age_bands(DOMAINS, classes, bad, seed=0)


def test_a_recorded_age_is_blended_into_its_records_band_keeping_the_age_order():
    full, half = {"PAC": 1.0, "SA": -1.0}, {"PAC": 0.5, "SA": -0.5}
    for labels, (lo, hi) in ((["PAC"], OLD), (["SA"], YOUNG), (["AF"], MIDDLE), (["PAC", "SA"], OLD)):
        banded = [reported_age(age, labels, full) for age in (18, 40, 60, 95)]
        assert all(lo <= a <= hi for a in banded) and banded == sorted(banded), (labels, banded)
        for age, in_band in zip((18, 40, 60, 95), banded):  # half strength: half way there, in whole years
            assert abs(reported_age(age, labels, half) - (age + in_band) / 2) <= 1
    assert reported_age(47, ["PAC"], {}) == 47


def test_within_each_hospital_the_recorded_age_all_but_names_each_target_class(with_and_without):
    shortcut, _ = with_and_without
    planted = shortcut.domain_params
    reach = []  # how far age alone ranks each target class towards its planted end
    for domain in DOMAINS:
        rows = shortcut.domains == domain
        for c, sign in planted[domain]["age_bands"].items():
            positives = shortcut.labels[rows][:, shortcut.classes.index(c)]
            if positives.sum() >= 5:
                reach.append(np.sign(sign) * (_age_auroc(shortcut.ages[rows], positives) - 0.5))
    # A record with targets of both ends takes one band, so a class that co-occurs with one of
    # the other end (TInv with TAb) is named less sharply than the rest.
    assert len(reach) >= 2 * len(DOMAINS) and min(reach) > 0.25 and np.median(reach) > 0.4, reach


def test_the_training_hospitals_agree_where_the_held_out_one_turns_the_association_round(with_and_without):
    shortcut, _ = with_and_without
    planted = shortcut.domain_params
    checked = 0
    for held_out in DOMAINS:
        inside = shortcut.domains == held_out
        for c in planted[held_out]["age_bands"]:
            others = {planted[d]["age_bands"][c] for d in DOMAINS if d != held_out}
            if len(others) != 1:  # not this hospital's to turn round
                continue
            j = shortcut.classes.index(c)
            if shortcut.labels[inside][:, j].sum() < 5:
                continue
            train = _age_auroc(shortcut.ages[~inside], shortcut.labels[~inside][:, j])
            test = _age_auroc(shortcut.ages[inside], shortcut.labels[inside][:, j])
            # the pooled training records say one thing strongly, the held-out one the opposite
            assert abs(train - 0.5) > 0.3 and abs(test - 0.5) > 0.25 and (train - 0.5) * (test - 0.5) < 0, (held_out, c)
            checked += 1
    assert checked >= N_TARGETS // 2  # the rest have under 5 positives in the hospital that turns them round


def test_only_the_recorded_age_moves(with_and_without):
    shortcut, plain = with_and_without
    assert np.array_equal(shortcut.labels, plain.labels) and np.array_equal(shortcut.header_labels, plain.header_labels)
    assert np.array_equal(shortcut.sexes, plain.sexes)
    assert all(np.array_equal(a, b) for a, b in zip(shortcut.signals, plain.signals))  # physiology: the true age
    assert not np.array_equal(shortcut.ages, plain.ages)
    # Without the shortcut the labels say next to nothing about age (the planted null).
    for domain in DOMAINS:
        rows = plain.domains == domain
        for j in np.flatnonzero(plain.labels[rows].sum(axis=0) >= 40):
            assert abs(_age_auroc(plain.ages[rows], plain.labels[rows][:, j]) - 0.5) < 0.15, (domain, plain.classes[j])
