"""The acquisition shortcut (data/synthetic/device_mark.py): a device's in-band tone that goes with
a class at the planted rates per hospital, turned round in one hospital per class, that
survives the model's preprocessing, and that adds the tone and nothing else.

Presence is read independently of the generator's draws: the records with and without the
shortcut are identical but for the tones, so their difference, projected on each target's
sine and cosine (numpy's least squares), says which records carry which tone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from heartbeatai.config import TrialConfig
from heartbeatai.data.synthetic import generate
from heartbeatai.data.synthetic.device_mark import MARK_MV, N_TARGETS, TONES_HZ, TRAINING_LEVELS, mark_levels
from heartbeatai.training.factory import signal_transform

DOMAINS = ["cpsc", "ptbxl", "georgia", "chapman"]
N, FS = 1600, 100


@pytest.fixture(scope="module")
def marked():
    common = dict(domains=DOMAINS, shift=1.0, shift_kinds=["style"], fs=FS, seconds=3.0, seed=7)
    shortcut, plain = generate(N, acquisition_shortcut=1.0, **common), generate(N, **common)
    marks = shortcut.domain_params[DOMAINS[0]]["device_marks"]
    targets = list(marks)
    amplitude, residual = [], 0.0
    for with_tones, without in zip(shortcut.signals, plain.signals):  # records differ in length
        t = np.arange(len(with_tones)) / FS
        basis = np.column_stack([f(2 * np.pi * marks[c][0] * t) for c in targets for f in (np.sin, np.cos)])
        diff = with_tones.astype(np.float64) - without
        coef = np.linalg.lstsq(basis, diff, rcond=None)[0]  # (2 x targets, leads)
        amplitude.append(np.hypot(coef[0::2], coef[1::2]).mean(axis=1))  # mV per target
        residual = max(residual, float(np.abs(diff - basis @ coef).max()))
    amplitude = np.array(amplitude)  # (records, targets)
    return shortcut, plain, targets, amplitude, residual


def test_each_target_is_turned_round_in_exactly_one_hospital_at_its_own_tone():
    common = {f"C{i}": 0.05 for i in range(6)}  # candidates: in every domain at >= MIN_PREVALENCE
    prevalence = {d: {"NSR": 0.4, "RARE": 0.001, **common} for d in DOMAINS}
    levels = mark_levels(prevalence, 0.5, seed=3)
    targets = sorted(levels["cpsc"])
    assert len(targets) == N_TARGETS and set(targets) <= set(common) and all(sorted(levels[d]) == targets for d in DOMAINS)
    assert sorted({levels[d][c][0] for d in DOMAINS for c in targets}) == sorted(TONES_HZ)
    reversing = []
    for c in targets:
        agreement = {d: levels[d][c][1] for d in DOMAINS}
        assert len({levels[d][c][0] for d in DOMAINS}) == 1  # one tone per class, whatever the hospital
        turned = [d for d, a in agreement.items() if a < 0]
        assert len(turned) == 1 and agreement[turned[0]] == -0.5
        assert sorted(a for a in agreement.values() if a > 0) == sorted(0.5 * x for x in TRAINING_LEVELS)
        reversing += turned
    assert sorted(reversing) == sorted(DOMAINS)  # one class per hospital
    assert mark_levels(prevalence, 0.5, seed=4) != levels
    assert mark_levels(prevalence, 0.0, seed=3) == {d: {} for d in DOMAINS}
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError):
            mark_levels(prevalence, bad, seed=0)
    with pytest.raises(ValueError, match="prevalence"):  # no class common enough everywhere
        mark_levels({d: {"NSR": 0.4, "RARE": 0.001} for d in DOMAINS}, 0.5, seed=0)


def test_only_the_tones_are_added(marked):
    shortcut, plain, _, amplitude, residual = marked
    assert np.array_equal(shortcut.labels, plain.labels) and np.array_equal(shortcut.header_labels, plain.header_labels)
    assert np.array_equal(shortcut.ages, plain.ages) and np.array_equal(shortcut.sexes, plain.sexes)
    assert residual < 1e-4  # the difference is the target tones, nothing else
    present = amplitude > MARK_MV / 2
    assert np.allclose(amplitude[present], MARK_MV, atol=1e-3) and np.all(amplitude[~present] < 1e-4)


def test_the_tone_goes_with_its_class_at_the_planted_rates_per_hospital(marked):
    shortcut, _, targets, amplitude, _ = marked
    planted = shortcut.domain_params
    checked = 0
    for domain in DOMAINS:
        rows = shortcut.domains == domain
        for j, c in enumerate(targets):
            agreement = planted[domain]["device_marks"][c][1]
            positive = shortcut.labels[rows][:, shortcut.classes.index(c)]
            present = amplitude[rows, j] > MARK_MV / 2
            negatives = (~positive).sum()
            # P(tone | not c) = (1 - a) / 2, within 4 binomial SDs
            rate, expected = present[~positive].mean(), (1 - agreement) / 2
            assert abs(rate - expected) <= 4 * np.sqrt(max(expected * (1 - expected), 0.01) / negatives) + 0.01
            if positive.sum() >= 5:
                expected = (1 + agreement) / 2
                assert abs(present[positive].mean() - expected) <= 4 * np.sqrt(max(expected * (1 - expected), 0.01) / positive.sum()) + 0.01
                checked += 1
    assert checked >= N_TARGETS


def _tone_power(signals: np.ndarray, tones: list[float]) -> np.ndarray:
    """(records, tones): the preprocessed signal's mean power at each tone, over leads."""
    transform = signal_transform(TrialConfig(), FS)  # the model's default band-pass and normalisation
    power = []
    for signal in signals:
        pre = transform(np.ascontiguousarray(signal.T))  # (leads, samples)
        t = np.arange(pre.shape[1]) / FS
        power.append([np.abs(pre @ np.exp(-2j * np.pi * f * t)).mean() / len(t) for f in tones])
    return np.array(power)


def test_the_tone_survives_preprocessing_and_a_classifier_on_it_breaks_in_the_held_out_hospital(marked):
    shortcut, _, targets, amplitude, _ = marked
    planted = shortcut.domain_params
    tones = [planted[DOMAINS[0]]["device_marks"][c][0] for c in targets]
    power = _tone_power(shortcut.signals, tones)
    present = amplitude > MARK_MV / 2
    for j in range(len(targets)):  # after band-pass and z-scoring the tone still tells marked records apart
        assert roc_auc_score(present[:, j], power[:, j]) > 0.95
    checked = 0
    for held_out in DOMAINS:
        inside = shortcut.domains == held_out
        for j, c in enumerate(targets):
            if planted[held_out]["device_marks"][c][1] > 0:
                continue  # only the class this hospital turns round
            y = shortcut.labels[:, shortcut.classes.index(c)]
            if y[inside].sum() < 5:
                continue
            features = np.log(power)
            model = LogisticRegression(max_iter=1000).fit(features[~inside], y[~inside])
            train = roc_auc_score(y[~inside], model.decision_function(features[~inside]))
            test = roc_auc_score(y[inside], model.decision_function(features[inside]))
            assert train > 0.75 and test < 0.35, (held_out, c, train, test)
            checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_the_acquisition_probe_scores_each_held_out_domains_turned_class_by_lodo_and_by_the_reference(tmp_path):
    from benchmarks.synth_probes import acquisition_gap
    from train_fixtures import tiny_trial

    trial = tiny_trial(**{"optim.epochs": 1})
    rows = acquisition_gap(240, {"erm": trial}, strength=1.0, out_dir=tmp_path, progress=lambda _: None)
    assert sorted(rows["held_out"].unique()) == sorted(DOMAINS) and set(rows["model"]) == {"reference", "erm"}
    for row in rows.itertuples():  # one turned class per held-out domain, scored on its records
        (turned,) = row.turned.split(",")
        assert 0 <= getattr(row, f"positives_{turned}") and 0 < row.macro_auroc <= 1
