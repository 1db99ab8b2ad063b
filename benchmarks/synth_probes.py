"""Probes of the synthetic benchmark that need more than the generator: how well its
domains can be told apart after the study's own preprocessing (`separability`), and how
well the platform's own model learns its classes within and across domains
(`learnability`, in bench_synth_learn.py).

The domain classifier is deliberately independent of the generator: scikit-learn on
features a convolutional network can see in a preprocessed window (inter-lead
correlations, in-band spectra, the median beat's shape), never the generator's
parameters. Windows are what a trial feeds its model: the study's sampling rate,
`SignalTransform` with `PreprocessConfig`'s band-pass and per-lead z-score over the
window, so per-lead gains, out-of-band noise and mains are gone before it looks.
"""

from __future__ import annotations

import numpy as np
from scipy import signal
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from heartbeatai.config import PreprocessConfig
from heartbeatai.data.synthetic import generate
from heartbeatai.training.transforms import SignalTransform

BANDS_HZ = ((0.5, 3.0), (3.0, 8.0), (8.0, 15.0), (15.0, 25.0), (25.0, 35.0), (35.0, 45.0))


def preprocess(signal_mv: np.ndarray, fs: float, seconds: float) -> np.ndarray:
    """(12, T) model input: the first `seconds` of a (samples, 12) record through the
    trial preprocessing with its default settings."""
    config = PreprocessConfig()
    transform = SignalTransform(fs, bandpass_low_hz=config.bandpass_low_hz,
                                bandpass_high_hz=config.bandpass_high_hz, normalize=config.normalize)
    return transform(np.ascontiguousarray(signal_mv[:int(seconds * fs)].T, dtype=np.float32))


def _beats(x: np.ndarray, fs: float) -> list[int]:
    energy = np.sum(np.diff(x, axis=1) ** 2, axis=0)
    width = max(1, int(0.08 * fs))
    envelope = np.convolve(energy, np.ones(width) / width, mode="same")
    peaks, _ = signal.find_peaks(envelope, height=0.15 * np.percentile(envelope, 99), distance=int(0.25 * fs))
    return [int(p) for p in peaks]


def domain_features(x: np.ndarray, fs: float) -> np.ndarray:
    """Features of one preprocessed (12, T) window: the 66 inter-lead correlations, log
    power of each lead in six bands of 0.5-45 Hz, and the median beat of every lead
    (-250..+400 ms around each QRS, at 50 Hz)."""
    correlations = np.corrcoef(x)[np.triu_indices(12, 1)]
    f, pxx = signal.welch(x, fs=fs, nperseg=min(x.shape[1], int(1.28 * fs)), axis=-1)
    powers = np.stack([np.log(pxx[:, (f >= lo) & (f < hi)].sum(axis=1) + 1e-12) for lo, hi in BANDS_HZ], axis=1)
    before, after = int(0.25 * fs), int(0.4 * fs)
    peaks = [p for p in _beats(x, fs) if p - before >= 0 and p + after <= x.shape[1]]
    beat = np.median(np.stack([x[:, p - before:p + after] for p in peaks]), axis=0) if peaks \
        else np.zeros((12, before + after))
    step = max(1, int(round(fs / 50)))
    return np.concatenate([correlations, powers.ravel(), beat[:, ::step].ravel()])


def separability(n_records: int = 800, *, shift: float = 1.0, fs: int = 100, seconds: float = 5.0, seed: int = 11,
                 domains=("cpsc", "ptbxl", "georgia", "chapman"), folds: int = 4, workers: int = 1) -> dict:
    """Balanced accuracy of a cross-validated random forest telling the domains apart from
    preprocessed windows, with only the style shift on (every domain at the same
    prevalences, so a label gives no domain away). Chance is 1 / domains."""
    data = generate(n_records, domains=domains, shift=shift, shift_kinds=("style",), fs=fs, seconds=10.0,
                    seed=seed, workers=workers)
    features = np.stack([domain_features(preprocess(s, fs, seconds), fs) for s in data.signals])
    forest = RandomForestClassifier(n_estimators=300, max_features="sqrt", random_state=0, n_jobs=workers)
    predicted = cross_val_predict(forest, features, data.domains,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    names = sorted(set(data.domains))
    return {"balanced_accuracy": float(balanced_accuracy_score(data.domains, predicted)),
            "chance": 1.0 / len(names), "domains": names,
            "confusion": confusion_matrix(data.domains, predicted, labels=names)}
