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
import pandas as pd
from scipy import signal
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from heartbeatai.config import PreprocessConfig
from heartbeatai.data.synthetic import generate
from heartbeatai.ecg import PAPER_DOMAINS
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


FEATURE_GROUPS = ("correlations", "bands", "beats")


def domain_features(x: np.ndarray, fs: float, groups: tuple[str, ...] = FEATURE_GROUPS) -> np.ndarray:
    """Features of one preprocessed (12, T) window: the 66 inter-lead correlations, log
    power of each lead in six bands of 0.5-45 Hz, and the median beat of every lead
    (-250..+400 ms around each QRS, at 50 Hz); `groups` picks among them."""
    correlations = np.corrcoef(x)[np.triu_indices(12, 1)]
    f, pxx = signal.welch(x, fs=fs, nperseg=min(x.shape[1], int(1.28 * fs)), axis=-1)
    powers = np.stack([np.log(pxx[:, (f >= lo) & (f < hi)].sum(axis=1) + 1e-12) for lo, hi in BANDS_HZ], axis=1)
    before, after = int(0.25 * fs), int(0.4 * fs)
    peaks = [p for p in _beats(x, fs) if p - before >= 0 and p + after <= x.shape[1]]
    beat = np.median(np.stack([x[:, p - before:p + after] for p in peaks]), axis=0) if peaks \
        else np.zeros((12, before + after))
    step = max(1, int(round(fs / 50)))
    parts = {"correlations": correlations, "bands": powers.ravel(), "beats": beat[:, ::step].ravel()}
    return np.concatenate([parts[g] for g in groups])


def separability(n_records: int = 800, *, shift: float = 1.0, fs: int = 100, seconds: float = 5.0, seed: int = 11,
                 domains=PAPER_DOMAINS, folds: int = 4, workers: int = 1,
                 groups: tuple[str, ...] = FEATURE_GROUPS) -> dict:
    """Balanced accuracy of a cross-validated random forest telling the domains apart from
    preprocessed windows, with only the style shift on (every domain at the same
    prevalences, so a label gives no domain away). Chance is 1 / domains."""
    data = generate(n_records, domains=domains, shift=shift, shift_kinds=("style",), fs=fs, seconds=10.0,
                    seed=seed, workers=workers)
    features = np.stack([domain_features(preprocess(s, fs, seconds), fs, groups) for s in data.signals])
    forest = RandomForestClassifier(n_estimators=300, max_features="sqrt", random_state=0, n_jobs=workers)
    predicted = cross_val_predict(forest, features, data.domains,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    names = sorted(set(data.domains))
    return {"balanced_accuracy": float(balanced_accuracy_score(data.domains, predicted)),
            "chance": 1.0 / len(names), "domains": names,
            "confusion": confusion_matrix(data.domains, predicted, labels=names)}


# -- learnability: the platform's own model, within and across domains -------------------


def _trial(epochs: int | None, overrides: dict | None = None):
    """The demo study's trial (studies/configs/demo.yaml), optionally with more epochs and other
    dotted-key changes."""
    import yaml
    from pathlib import Path

    from heartbeatai.config import TrialConfig

    demo = Path(__file__).resolve().parents[1] / "studies" / "configs" / "demo.yaml"
    trial = TrialConfig.model_validate(yaml.safe_load(demo.read_text())["trial"])
    changes = {**(overrides or {}), **({"optim.epochs": epochs} if epochs else {})}
    return trial.with_overrides(changes) if changes else trial


def _clean_labels(raw_dir, record_ids: list[str], classes: list[str]) -> np.ndarray:
    """True (pre-noise) labels from the generator's manifest."""
    import json
    from pathlib import Path

    from heartbeatai.data.domains import SYNTHETIC_MANIFEST
    from heartbeatai.labels import scored_vocabulary

    manifest = json.loads((Path(raw_dir) / SYNTHETIC_MANIFEST).read_text())
    truth = {row["record"]: set(row["label_codes"]) for row in manifest["records"]}
    codes = [c.code for c in scored_vocabulary().select(classes).classes]
    return np.array([[code in truth[r] for code in codes] for r in record_ids], dtype=bool)


def _train_and_predict(data, fold_id: str, classes: list[str], trial, out, test_ids: list[str]):
    """Train one fold in-process, keep the best-validation epoch, return its probabilities
    on `test_ids` and its validation-tuned thresholds."""
    import shutil
    from pathlib import Path

    import torch

    from heartbeatai.training.loop import run_training
    from heartbeatai.training.predict import predict
    from heartbeatai.training.spec import TrainSpec

    spec = TrainSpec(trial=trial, data_path=str(data), fold_id=fold_id, classes=tuple(classes), out_dir=str(out))
    keep, best = Path(out) / fold_id.replace(":", "_"), {"value": -np.inf}

    def report(metrics: dict, checkpoint_dir) -> None:
        if checkpoint_dir is not None and metrics[spec.selection_metric] > best["value"]:
            best["value"] = metrics[spec.selection_metric]
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(checkpoint_dir, keep)

    run_training(spec, report=report, device=torch.device("cpu"), loader_workers=0)
    _, probabilities, thresholds = predict(keep, data, test_ids, device=torch.device("cpu"))
    return probabilities, thresholds


def _auroc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, score)) if 0 < truth.sum() < truth.size else float("nan")


def rule_thresholds(val_y: np.ndarray, val_scores: np.ndarray, train_prevalence: np.ndarray,
                    min_positives: tuple[int, ...] = (3, 5, 10)) -> dict[str, np.ndarray]:
    """Per-class thresholds under other rules than the platform's, from the same validation
    scores: the F1-optimal one (the platform's, metrics.tune_thresholds), the training
    prevalence's share called positive, and the F1-optimal one only where validation holds at
    least m positives (the prevalence rule below)."""
    from heartbeatai.metrics import fallback_threshold, tune_thresholds

    f1_optimal = tune_thresholds(val_y, val_scores, train_prevalence)
    prevalence = np.array([fallback_threshold(val_scores[:, c], p) for c, p in enumerate(train_prevalence)])
    rules = {"F1-optimal (the platform's)": f1_optimal, "training prevalence": prevalence}
    for m in min_positives:
        rules[f"F1-optimal at >= {m} validation positives"] = np.where(val_y.sum(axis=0) >= m, f1_optimal, prevalence)
    return rules


def learnability(n_records: int = 800, *, held_out: str = "georgia", parts: int = 1, epochs: int | None = None,
                 seed: int = 0, shift: float = 1.0, workers: int = 1, out_dir=None, min_positives: int = 10,
                 overrides: dict | None = None) -> dict:
    """Per-class F1 of the platform's model (the demo's trial) on the held-out domain's
    records, trained within distribution (`reference:<d>:<i>` folds: every domain, d's
    other parts included, at LODO's training size) and across domains (`lodo:<d>`),
    both scored on the same records (the union of the first `parts` reference tests)
    against the true labels. The benchmark is generated and prepared at the demo's size
    and rate (100 Hz, 10 s) through the platform's own prepare and fold planner. The
    within-distribution calls are also made under each of `rule_thresholds`' rules
    (`threshold_rules`: macro-F1 per rule)."""
    import tempfile
    from pathlib import Path

    import torch
    from sklearn.metrics import f1_score

    from heartbeatai.data.folds import fold_records, read_folds, write_folds
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.prepared import PreparedDataset
    from heartbeatai.data.synthetic import write_benchmark
    from heartbeatai.labels import scored_vocabulary

    torch.set_num_threads(max(1, workers))
    classes = scored_vocabulary().abbrs
    trial = _trial(epochs, overrides)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp = Path(tmp)
        raw = write_benchmark(tmp / "raw", n_records, shift=shift, fs=100, seconds=10.0, seed=seed, workers=workers)
        data = tmp / "prepared"
        prepare([raw], data, PrepareSettings(fs=100, max_seconds=10.0), workers=workers, progress=False)
        write_folds(data, "lodo")
        write_folds(data, "reference")
        reference, _ = read_folds(data, "reference")
        lodo, _ = read_folds(data, "lodo")
        header = PreparedDataset(data)
        header_labels, row_of = header.labels(classes), {r: i for i, r in enumerate(header.records["record_id"])}
        test_ids, within, rule_calls = [], [], []
        for part in range(parts):
            fold_id = f"reference:{held_out}:{part}"
            split = fold_records(reference, fold_id)
            ids = split["test"]
            scores, thresholds = _train_and_predict(data, fold_id, classes, trial, tmp / "runs", ids + split["val"])
            within.append((scores[:len(ids)], thresholds))
            # thresholds are tuned on header labels, as the platform's own are
            val_y = header_labels[[row_of[r] for r in split["val"]]]
            prevalence = header_labels[[row_of[r] for r in split["train"]]].mean(axis=0)
            rules = rule_thresholds(val_y, scores[len(ids):], prevalence)
            rule_calls.append({rule: scores[:len(ids)] >= t for rule, t in rules.items()})
            test_ids += ids
        across = _train_and_predict(data, f"lodo:{held_out}", classes, trial, tmp / "runs", test_ids)
        truth = _clean_labels(raw, test_ids, classes)
        train_ids = fold_records(lodo, f"lodo:{held_out}")["train"]
        train_prevalence = _clean_labels(raw, train_ids, classes).mean(axis=0)
    within_p = np.concatenate([p for p, _ in within])
    within_y = np.concatenate([p >= t for p, t in within])
    across_p, across_y = across[0], across[0] >= across[1]
    rows = []
    for j, abbr in enumerate(classes):
        positives = int(truth[:, j].sum())
        if positives == 0:
            continue
        rows.append({"class": abbr, "positives": positives, "lodo_train_prevalence": float(train_prevalence[j]),
                     "within": f1_score(truth[:, j], within_y[:, j], zero_division=0),
                     "across": f1_score(truth[:, j], across_y[:, j], zero_division=0),
                     "within_auroc": _auroc(truth[:, j], within_p[:, j]),
                     "across_auroc": _auroc(truth[:, j], across_p[:, j])})
    scored = [r for r in rows if r["positives"] >= min_positives]
    kept = [classes.index(r["class"]) for r in scored]
    by_rule = {}
    for rule in rule_calls[0]:
        calls = np.concatenate([part[rule] for part in rule_calls])
        f1s = [f1_score(truth[:, j], calls[:, j], zero_division=0) for j in kept]
        by_rule[rule] = float(np.mean(f1s)) if f1s else float("nan")
    return {"held_out": held_out, "records": len(test_ids), "classes": rows, "min_positives": min_positives,
            "macro_within": float(np.mean([r["within"] for r in scored])) if scored else float("nan"),
            "macro_across": float(np.mean([r["across"] for r in scored])) if scored else float("nan"),
            "threshold_rules": by_rule}


# -- planted effects: each arm against full on every LODO fold, outside the study ----------


def arm_effects(n_records: int, arms: dict[str, dict], *, shift: float, shift_kinds: tuple[str, ...] | None,
                trial_config, seeds: tuple[int, ...] = (1, 2), min_positives: int = 5, seed: int = 0,
                age_shortcut: float = 0.0, out_dir=None, progress=print) -> pd.DataFrame:
    """Macro AUROC (header labels, classes with >= `min_positives` test positives) of every
    arm on every `lodo:<d>` fold, each arm's overrides applied to `trial_config` and trained
    in-process at each of `seeds`: the larger run that says whether a planted effect exists
    before a study is asked to detect it. One row per fold x arm x seed."""
    import tempfile
    import time
    from pathlib import Path

    from heartbeatai.data.folds import fold_records, read_folds, write_folds
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.prepared import PreparedDataset
    from heartbeatai.data.synthetic import write_benchmark
    from heartbeatai.labels import scored_vocabulary

    classes = scored_vocabulary().abbrs
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp = Path(tmp)
        raw = write_benchmark(tmp / "raw", n_records, shift=shift, shift_kinds=shift_kinds, fs=100, seconds=10.0,
                              seed=seed, age_shortcut=age_shortcut)
        data = tmp / "prepared"
        prepare([raw], data, PrepareSettings(fs=100, max_seconds=10.0), workers=1, progress=False)
        write_folds(data, "lodo")
        lodo, _ = read_folds(data, "lodo")
        dataset = PreparedDataset(data)
        labels = dataset.labels(classes)
        index = {r: i for i, r in enumerate(dataset.records["record_id"])}
        for fold in sorted(dict.fromkeys(lodo["fold_id"])):
            test = fold_records(lodo, fold)["test"]
            y = labels[[index[r] for r in test]]
            kept = [j for j in range(len(classes)) if y[:, j].sum() >= min_positives and (~y[:, j]).any()]
            for arm, overrides in arms.items():
                for s in seeds:
                    trial = trial_config.with_overrides({**overrides, "seed": s})
                    p, _ = _train_and_predict(data, fold, classes, trial, tmp / f"runs-{arm}-{s}", test)
                    auroc = float(np.mean([_auroc(y[:, j], p[:, j]) for j in kept]))
                    rows.append({"fold_id": fold, "arm": arm, "seed": s, "macro_auroc": auroc})
                    progress(f"  {fold:14s} {arm:14s} seed {s}: macro AUROC {auroc:.4f} "
                             f"({time.perf_counter() - started:.0f} s)")
    return pd.DataFrame(rows)


# -- the acquisition shortcut: what LODO costs against the matched reference, per algorithm ----


def acquisition_gap(n_records: int, trials: dict, *, strength: float,
                    seeds: tuple[int, ...] = (1,), parts: int = 2, seed: int = 0, shift: float = 1.0,
                    min_positives: int = 5, out_dir=None, progress=print) -> pd.DataFrame:
    """Per held-out domain d: the AUROC, on d's records, of the class d turns round
    (device_mark.py) and the macro AUROC (classes with >= `min_positives` positives in d), for
    each algorithm trained on `lodo:<d>`, and for ERM trained within distribution on the
    matched reference (`reference:<d>:<i>`, cross-fitted over `parts` parts, so every record of
    d is scored by a model that trained on d's other records). `trials`: algorithm name -> its
    trial configuration (the zoo config's `algorithm_base`; "erm" also trains the reference).
    One row per domain x model x seed; `model` is "reference" (ERM) or an algorithm name."""
    import tempfile
    import time
    from pathlib import Path

    from heartbeatai.data.folds import fold_records, read_folds, write_folds
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.synthetic import write_benchmark
    from heartbeatai.data.synthetic.benchmark import domain_profiles
    from heartbeatai.labels import scored_vocabulary

    classes = scored_vocabulary().abbrs
    # The targets and their reversing hospitals do not depend on the strength (it only scales the
    # agreement), so at strength 0 the same classes are scored: the gap without the shortcut.
    profiles = domain_profiles(PAPER_DOMAINS, shift, None, False, 0.0, seed, 0.0, 1.0)
    turned = {d: [c for c, (_, a) in profiles[d].device_marks.items() if a < 0] for d in PAPER_DOMAINS}
    started, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp = Path(tmp)
        raw = write_benchmark(tmp / "raw", n_records, shift=shift, fs=100, seconds=10.0, seed=seed,
                              acquisition_shortcut=strength)
        data = tmp / "prepared"
        prepare([raw], data, PrepareSettings(fs=100, max_seconds=10.0), progress=False)
        write_folds(data, "lodo")
        write_folds(data, "reference", k=parts)
        lodo, _ = read_folds(data, "lodo")
        reference, _ = read_folds(data, "reference")
        for d in PAPER_DOMAINS:
            test = fold_records(lodo, f"lodo:{d}")["test"]
            truth = _clean_labels(raw, test, classes)
            kept = [j for j in range(len(classes)) if truth[:, j].sum() >= min_positives and (~truth[:, j].astype(bool)).any()]
            for s in seeds:
                for name in ("reference", *trials):
                    trial = trials["erm" if name == "reference" else name].with_overrides({"seed": s})
                    if name == "reference":  # every record of d scored out of fold
                        parts_p = {}
                        for i in range(parts):
                            ids = fold_records(reference, f"reference:{d}:{i}")["test"]
                            p, _ = _train_and_predict(data, f"reference:{d}:{i}", classes, trial, tmp / f"r{s}", ids)
                            parts_p.update(zip(ids, p))
                        p = np.stack([parts_p[r] for r in test])
                    else:
                        p, _ = _train_and_predict(data, f"lodo:{d}", classes, trial, tmp / f"{name}{s}", test)
                    row = {"held_out": d, "model": name, "seed": s, "turned": ",".join(turned[d]),
                           "macro_auroc": float(np.mean([_auroc(truth[:, j], p[:, j]) for j in kept]))}
                    for c in turned[d]:
                        row[f"auroc_{c}"] = _auroc(truth[:, classes.index(c)], p[:, classes.index(c)])
                        row[f"positives_{c}"] = int(truth[:, classes.index(c)].sum())
                    rows.append(row)
                    progress(f"  lodo:{d} {name:10s} seed {s}: macro AUROC {row['macro_auroc']:.4f}, turned "
                             + ", ".join(f"{c} {row[f'auroc_{c}']:.3f} ({row[f'positives_{c}']} positives)"
                                         for c in turned[d]) + f" ({time.perf_counter() - started:.0f} s)")
    return pd.DataFrame(rows)
