"""The spurious age shortcut (data/synthetic/shortcut.py): its strength is what the config says,
its association reverses between every LODO fold's training and held-out domains for every
target class, and it moves the recorded age and nothing else. Strength is
measured as what a classifier could read: how well the recorded age alone ranks each target
class (sklearn's AUROC), per hospital and pooled over a fold's training hospitals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from heartbeatai.data.synthetic import generate
from heartbeatai.data.synthetic.benchmark import drawn_classes
from heartbeatai.data.synthetic.shortcut import MIDDLE, OLD, TARGETS, YOUNG, age_bands, reported_age

DOMAINS = ["cpsc", "ptbxl", "georgia", "chapman"]
N = 1200


@pytest.fixture(scope="module")
def with_and_without():
    common = dict(domains=DOMAINS, shift=1.0, shift_kinds=["style"], fs=100, seconds=3.0, seed=7)  # short: ages are measured, signals only compared
    return generate(N, age_shortcut=1.0, **common), generate(N, **common)


def _age_auroc(ages: np.ndarray, positives: np.ndarray) -> float:
    """How well the recorded age alone ranks a class (1: every positive older than every negative)."""
    return float(roc_auc_score(positives, ages))


def test_every_target_class_is_old_in_half_the_hospitals_and_young_in_the_other_half():
    classes = drawn_classes(False)
    bands = age_bands(DOMAINS, classes, 1.0, seed=3)
    targets = sorted(bands["cpsc"])
    assert targets == sorted(TARGETS) and set(TARGETS) <= set(classes)  # the generator draws every target
    assert sorted(age_bands(DOMAINS, ["AF", "PAC", "SA"], 1.0, seed=3)["cpsc"]) == ["PAC", "SA"]  # only those drawn
    assert all(sorted(bands[d]) == targets for d in DOMAINS)
    table = np.array([[bands[d][c] for c in targets] for d in DOMAINS])  # (domains, targets)
    assert set(np.abs(table).ravel()) == {1.0}
    assert (table.sum(axis=0) == 0).all()  # two hospitals old, two young, for every class
    # so each held-out hospital sides with one training hospital against two: the training
    # majority is the opposite of what it shows, for every class and every fold
    for k in range(len(DOMAINS)):
        assert (np.sign(np.delete(table, k, axis=0).sum(axis=0)) == -table[k]).all()
    assert len({tuple(column) for column in table.T}) > 1  # the splits are drawn per class
    assert age_bands(DOMAINS, classes, 1.0, seed=4) != bands
    assert age_bands(DOMAINS, classes, 0.0, seed=3) == {d: {} for d in DOMAINS}
    half = age_bands(DOMAINS, classes, 0.5, seed=3)
    assert all(half[d][c] == bands[d][c] / 2 for d in DOMAINS for c in targets)  # strength scales, draws stay
    three = age_bands(DOMAINS[:3], classes, 1.0, seed=3)  # odd: one hospital on the smaller side
    assert all(sorted(three[d][c] for d in DOMAINS[:3]).count(three["cpsc"][c]) in (1, 2) for c in targets)
    assert all(abs(sum(three[d][c] for d in DOMAINS[:3])) == 1.0 for c in targets)
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


def test_every_folds_training_hospitals_lean_each_target_to_the_end_the_held_out_one_contradicts(with_and_without):
    """Pooled over a fold's three training hospitals, a target's positives sit at the end the
    held-out hospital does not take, except for those of the one training hospital on its side:
    age alone ranks the class towards the majority's end at about the majority's share of the
    training positives (counted here, not from the ages), and the held-out records the other way."""
    shortcut, _ = with_and_without
    planted = {d: shortcut.domain_params[d]["age_bands"] for d in DOMAINS}
    checked = 0
    for held_out in DOMAINS:
        inside = shortcut.domains == held_out
        for c, side in planted[held_out].items():
            j = shortcut.classes.index(c)
            positives = {d: int(shortcut.labels[shortcut.domains == d][:, j].sum()) for d in DOMAINS}
            against = sum(n for d, n in positives.items() if d != held_out and planted[d][c] != side)
            along = sum(n for d, n in positives.items() if d != held_out and planted[d][c] == side)
            if positives[held_out] < 5 or against + along < 15:
                continue
            toward_majority = _age_auroc(shortcut.ages[~inside], shortcut.labels[~inside][:, j])
            if side > 0:  # the held-out hospital is old, so the majority is young
                toward_majority = 1 - toward_majority
            assert abs(toward_majority - against / (against + along)) < 0.1, (held_out, c, toward_majority, positives)
            test = _age_auroc(shortcut.ages[inside], shortcut.labels[inside][:, j])
            assert (test - 0.5) * side > 0.25, (held_out, c, test)
            checked += 1
    assert checked >= 2 * len(DOMAINS)  # the rest have too few positives to rank


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
