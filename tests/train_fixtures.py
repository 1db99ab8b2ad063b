"""A tiny prepared dataset with a learnable planted pattern, and tiny trial configs.

Three domains of 100 Hz records whose classes leave a trace a small network finds in
two epochs: AF adds a 12 Hz oscillation on every lead, RBBB a 4 Hz one on V1-V3, each
domain with its own noise level and amplitude (a mild domain shift). Written with the
platform's own PreparedWriter and fold planner, so the training code reads exactly
what `prepare` and `data folds` produce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heartbeatai.config import TrialConfig
from heartbeatai.run_file import RunFile
from heartbeatai.data.folds import write_folds
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.prepared_writer import PreparedRecord, PreparedWriter
from heartbeatai.labels import scored_vocabulary

FS = 100
CLASSES = ("AF", "RBBB")
FOLD = "lodo:gamma"
_DOMAINS = {"alpha": (0.2, 1.0), "beta": (0.3, 0.8), "gamma": (0.25, 1.2)}  # noise, pattern gain
_AF, _RBBB, _SINUS = "164889003", "713427006", "426783006"


def write_planted_dataset(out: Path, *, records_per_domain: int = 100, seconds: float = 6.0, seed: int = 0) -> Path:
    """Write the dataset and its lodo folds under `out`; return `out`."""
    rng = np.random.default_rng(seed)
    vocabulary = scored_vocabulary()
    writer = PreparedWriter(out, fs=FS, vocabulary=vocabulary, params={"fixture": "planted"})
    for domain, (noise, gain) in _DOMAINS.items():
        for k in range(records_per_domain):
            has_af, has_rbbb = k % 2 == 1, k % 3 == 0
            # Some records shorter than a crop, some longer: padding and sliding windows both run.
            length = int(FS * seconds * (0.5 if k % 7 == 0 else 1.5 if k % 5 == 0 else 1.0))
            signal = _planted_signal(rng, length, noise, gain, has_af, has_rbbb)
            codes = [c for c, on in ((_AF, has_af), (_RBBB, has_rbbb)) if on] or [_SINUS]
            record_id = f"{domain[0].upper()}{k:04d}"
            writer.add(
                record_id,
                PreparedRecord(
                    record_id=record_id,
                    domain=domain,
                    source_path=f"{domain}/{record_id}",
                    patient_id=record_id,
                    age=float(rng.integers(20, 90)),
                    sex="male" if k % 2 else "female",
                    fs_original=FS,
                    length_original=length,
                    label_codes_raw=codes,
                    label_codes=codes,
                    hash_exact=f"exact-{record_id}",
                    hash_coarse=f"coarse-{record_id}",
                    header_gain=1000.0,
                    gain_mismatch=False,
                    nan_filled=False,
                    truncated=False,
                    leads_original=12,
                    signal=signal.astype(np.float16),
                ),
            )
    writer.finish()
    writer.close()
    write_folds(out, "lodo", val_fraction=0.3, seed=0)
    return out


def _planted_signal(rng, length: int, noise: float, gain: float, af: bool, rbbb: bool) -> np.ndarray:
    t = np.arange(length) / FS
    beat = np.sin(2 * np.pi * 1.2 * t) ** 15  # a crude R wave train at 72 bpm
    x = beat[:, None] * rng.uniform(0.5, 1.5, 12) + noise * rng.standard_normal((length, 12))
    if af:
        x += gain * 0.6 * np.sin(2 * np.pi * 12 * t + rng.uniform(0, 6.3))[:, None]
    if rbbb:
        x[:, 6:9] += gain * 0.8 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6.3))[:, None]
    return x


def tiny_trial(**overrides) -> TrialConfig:
    """A network of a few thousand parameters on 3 s crops: trains in seconds on a CPU."""
    base = {
        "model.stem_width": 8,
        "model.widths": [8, 16, 32],
        "model.depths": [1, 1, 1],
        "model.stem_kernel": 7,
        "model.kernel": 5,
        "model.se_reduction": 4,
        "model.concentration_stages": [1, 2],
        "mixstyle.layers": [1, 2],
        "mixstyle.p": 0.5,
        "loss.kind": "bce",
        "label_smoothing": 0.0,
        "preprocess.crop_seconds": 3.0,
        "preprocess.eval_stride_seconds": 1.5,
        "optim.lr": 0.03,
        "optim.epochs": 2,
        "optim.batch_size": 8,
        "seed": 0,
    }
    return TrialConfig().with_overrides({**base, **overrides})


def tiny_run_file(data: Path, **overrides) -> RunFile:
    return RunFile(
        data={"path": str(data), "fingerprint": PreparedDataset(data).fingerprint},
        fold_id=FOLD,
        classes=CLASSES,
        trial=tiny_trial(**overrides),
    )
