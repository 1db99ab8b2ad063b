"""A fake results store, generated: every table of results schema 3, for tests, demos and benchmarks.

Numbers follow the shapes a real LODO study shows (rare classes degrade most, ASHA stops
the weak trials early, MixStyle helps a little, the prevalence floor sits at AUROC 0.5,
rare classes have too few test positives for an interval to be read) so a dashboard can be
judged on them, but they are drawn, not trained: nothing here needs torch, the data or Ray.
The analysis tables (ablation_tests, class_tests, degradation, rarity_contrast) come from fake_analysis.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import yaml

from heartbeatai.analysis.consensus import NOT_TRAINED
from heartbeatai.arms import DEFAULT_ARMS, FULL, PREVALENCE as PREVALENCE_ARM, SEARCH as SEARCH_ARM, algorithm_of, is_algorithm
from heartbeatai.ecg import PAPER_DOMAINS
from heartbeatai.labels import scored_vocabulary
from heartbeatai.results.schema import ACTIVE_STATUSES, CONSENSUS_FOLD, SCORED_STATUSES, RunKey
from heartbeatai.results.writer import ResultsWriter
from heartbeatai.testing import fake_analysis

DOMAINS = (*PAPER_DOMAINS, "ningbo")
SE_STAGES = {"stage1": 64, "stage2": 128, "stage3": 256, "stage4": 256}
# ASHA rungs on `epoch` (grace 1, reduction 3) over at most 9 epochs.
_RUNGS = (1, 3, 9)
# How much each arm costs against `full` in AUROC (drawn; signs as ablations usually find).
_ARM_EFFECT = {"full": 0.0, "no-se": -0.006, "no-concentration": -0.004, "no-mixstyle": -0.015,
               "no-smoothing": -0.004, "loss-bce": -0.01, "baseline": -0.035}
SEARCH_SEED = 0
INTRA_K = 5  # the intra protocol's folds per domain; the fake runs the first of them
VAL_FRACTION = 0.15
# Classes per fold whose validation split has no positive: their threshold falls back.
FALLBACK_CLASSES = 2


def make_store(root: str | os.PathLike, study: str = "demo", n_folds: int = 4, n_trials: int = 40,
               classes: int | Sequence[str] = 26, seeds: int = 2, arms: Sequence[str] = DEFAULT_ARMS,
               records_per_fold: int = 120, record_views_per_fold: int = 6, in_progress: bool = False,
               matched_reference: int = 1, rope: float = fake_analysis.ROPE,
               decision_probability: float = fake_analysis.DECISION_PROBABILITY, seed: int = 0) -> str:
    """Write a study ``study`` under ``root``; returns the study directory.

    ``n_trials`` search trials (seed 0) are spread over the ``n_folds`` LODO folds (one per
    domain); every arm is retrained at ``seeds`` arm seeds 1..seeds, disjoint from the
    search seed. Each domain also has an intra fold (the first of 5), so every class has a
    reference figure; the last ``matched_reference`` domains also have a matched-size
    `reference` fold, which their degradation split then pairs on. ``records_per_fold``
    predictions are stored per split (test and validation). With ``in_progress`` the last
    fold is still searching: no test results and no analysis for it yet.
    """
    if not 1 <= n_folds <= len(DOMAINS):
        raise ValueError(f"n_folds must be 1..{len(DOMAINS)}")
    rng = np.random.default_rng(seed)
    vocabulary = scored_vocabulary()
    abbrs = list(vocabulary.abbrs[:classes]) if isinstance(classes, int) else list(classes)
    domains = list(DOMAINS[:n_folds])
    prevalence = _prevalences(rng, abbrs, domains)
    writer = ResultsWriter(os.path.join(os.fspath(root), study))

    card = _dataset_card(rng, prevalence)
    writer.write("dataset_card", card)
    sizes = card.groupby("domain")["n_records"].first()
    lodo_folds = [f"lodo:{d}" for d in domains]
    finished = lodo_folds[:-1] if in_progress else lodo_folds
    best_trials = []
    per_fold = np.diff(np.linspace(0, n_trials, n_folds + 1).astype(int))
    for fold_id, n in zip(lodo_folds, per_fold):
        trials, epochs = _search(rng, fold_id, int(n), running=fold_id not in finished)
        for chunk in range(0, len(trials), 2000):  # a running study writes many parts
            writer.write("trials", trials.iloc[chunk:chunk + 2000])
        writer.write("epochs", epochs)
        if fold_id in finished:
            writer.write("importances", _importances(rng, fold_id, trials))
            best_trials.append(_best_trial(trials))
            writer.write("best_configs", _best_config(fold_id, best_trials[-1], abbrs))
    algorithm_rng = np.random.default_rng([seed, 22])  # its own: the other tables stay as they were
    for arm in (a for a in arms if is_algorithm(a)):
        for fold_id, n in zip(finished, per_fold):
            trials, epochs = _algorithm_search(algorithm_rng, fold_id, arm, int(n))
            writer.write("trials", trials)
            writer.write("epochs", epochs)
    held_out = [f.split(":")[1] for f in finished]
    matched = held_out[len(held_out) - matched_reference:] if matched_reference > 0 and len(domains) > 1 else []
    arm_seeds = list(range(SEARCH_SEED + 1, SEARCH_SEED + 1 + seeds))
    lodo_metrics, lodo_classes = [], []
    for protocol, folds in (("lodo", finished), ("intra", [f"intra:{d}:0" for d in domains]),
                            ("reference", [f"reference:{d}:0" for d in matched])):
        for fold_id in folds:
            fold_arms = list(arms) if protocol == "lodo" else [FULL]
            runs, fold_metrics, class_metrics = _arm_runs(rng, protocol, fold_id, fold_arms, arm_seeds, abbrs,
                                                          prevalence, sizes)
            writer.write("trials", runs)
            writer.write("fold_metrics", fold_metrics)
            writer.write("class_metrics", class_metrics)
            if protocol == "lodo":
                lodo_metrics.append(fold_metrics)
                lodo_classes.append(class_metrics)
                writer.write("predictions", _predictions(rng, fold_id, abbrs, prevalence, records_per_fold, arm_seeds[0]))
                writer.write("record_views", _record_views(rng, fold_id, abbrs, prevalence, record_views_per_fold,
                                                           arm_seeds[0]))
    if finished:
        writer.write("best_configs", _consensus(best_trials, abbrs))
        degradation = fake_analysis.degradation(rng, held_out, matched, abbrs, prevalence, sizes, seeds, INTRA_K)
        writer.write("degradation", degradation)
        contrast = fake_analysis.rarity_contrast(degradation.assign(study=study))
        if not contrast.empty:
            writer.write("rarity_contrast", contrast)
        writer.write("ablation_tests", fake_analysis.ablation_tests(rng, pd.concat(lodo_metrics), rope,
                                                                    decision_probability))
        # Its own generator: the other tables stay as they were before class_tests existed.
        writer.write("class_tests", fake_analysis.class_tests(np.random.default_rng([seed, 23]),
                                                              pd.concat(lodo_classes), rope, decision_probability)
                     .assign(study=study))
        algorithm_arms = [a for a in arms if is_algorithm(a)]
        if algorithm_arms:  # its own generator: the other tables stay as they were without algorithm arms
            parts = fake_analysis.algorithm_parts(np.random.default_rng([seed, 21]), algorithm_arms,
                                                  degradation[degradation["label_set"] == "noisy"])
            writer.write("algorithm_parts", parts.assign(study=study))
    return os.path.join(os.fspath(root), study)


def make_many_studies(root: str | os.PathLike, n_studies: int, *, summaries: bool = True, **options) -> list[str]:
    """`n_studies` copies of one generated study under `root` (study-00000, study-00001, ...),
    hard-linked part for part so that thousands cost seconds; returns their names.

    With `summaries` each has its summary file as the study writes it when its stages end;
    without, the root is an older store whose summaries the reader must rebuild.
    `options` go to make_store (sizes of the one study)."""
    import json
    import shutil

    from heartbeatai.results.summary import SUMMARY_FILE, write_study_summary

    names = [f"study-{i:05d}" for i in range(n_studies)]
    first = make_store(root, study=names[0], **options)
    summary = write_study_summary(first) if summaries else None
    for name in names[1:]:
        target = os.path.join(os.fspath(root), name)
        shutil.copytree(first, target, copy_function=os.link, ignore=shutil.ignore_patterns(SUMMARY_FILE))
        if summary is not None:  # the parts are the same files, so the trials key is the same too
            with open(os.path.join(target, "results", SUMMARY_FILE), "w", encoding="utf-8") as handle:
                json.dump({**summary, "study": name}, handle)
    return names


def _key(protocol: str, fold_id: str, arm: str, seed: int, selection: str, trial_id: str) -> dict:
    """The run key without the study (make_store adds it when writing)."""
    key = RunKey("", protocol, fold_id, arm, seed, selection, trial_id).as_dict()
    del key["study"]
    return key


def _prevalences(rng, abbrs: list[str], domains: list[str]) -> pd.DataFrame:
    """domain x class prevalence: a long-tailed base rate, shifted per domain."""
    base = np.exp(rng.uniform(np.log(0.004), np.log(0.25), len(abbrs)))
    if "NSR" in abbrs:
        base[abbrs.index("NSR")] = 0.45
    shift = np.exp(rng.normal(0, 0.6, (len(domains), len(abbrs))))
    return pd.DataFrame(np.clip(base * shift, 0.001, 0.8), index=domains, columns=abbrs)


def _dataset_card(rng, prevalence: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for domain, shares in prevalence.iterrows():
        n_records = int(rng.integers(2000, 12000))
        for abbr, share in shares.items():
            rows.append(dict(domain=domain, **{"class": abbr}, count=int(share * n_records), prevalence=float(share),
                             n_records=n_records, n_patients=int(n_records * rng.uniform(0.6, 1.0)), fs=500,
                             median_seconds=10.0))
    return pd.DataFrame(rows)


def _search(rng, fold_id: str, n: int, running: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = rng.uniform(0, 1, n)
    smoothing = rng.uniform(0, 0.2, n)
    loss = rng.choice(["bce", "focal", "asl"], n)
    lr = np.exp(rng.uniform(np.log(1e-4), np.log(3e-3), n))
    dropout = rng.uniform(0, 0.5, n)
    quality = (0.86 + 0.03 * np.sin(np.pi * p) - 0.2 * (smoothing - 0.08) ** 2
               + np.select([loss == "asl", loss == "focal"], [0.01, 0.005], 0)
               - 0.01 * np.abs(np.log10(lr) + 3) + rng.normal(0, 0.008, n))
    stop_rung = np.select([quality < np.quantile(quality, 0.35), quality < np.quantile(quality, 0.65)], [0, 1], 2)
    epochs_run = np.array(_RUNGS)[stop_rung]
    status = np.where(stop_rung < 2, "early_stopped", "completed").astype(object)
    status[rng.uniform(size=n) < 0.02] = "errored"
    if running:  # the last trials of a fold still searching
        status[int(n * 0.7):] = "running"
        status[int(n * 0.85):] = "pending"
    trial_ids = [f"{fold_id.split(':')[1]}-{i:05d}" for i in range(n)]
    final = _learning_curve(epochs_run - 1, quality)
    trials = pd.DataFrame(dict(
        _key("lodo", fold_id, SEARCH_ARM, SEARCH_SEED, "search", ""), trial_id=trial_ids, status=status,
        error=np.where(status == "errored", "RuntimeError: loss is NaN", None),
        best_epoch=epochs_run - 1, epochs_run=epochs_run, wall_time_s=epochs_run * rng.uniform(20, 40, n),
        val_macro_auroc=final, val_macro_f1=final - 0.25, val_macro_auprc=final - 0.4,
        val_challenge_score=final - 0.3, selection_metric="val_macro_auroc", selection_value=final,
        provenance=json.dumps({"git_commit": "synthetic", "dataset_fingerprint": "synthetic"}),
        checkpoint_path=[f"{fold_id}/{t}/checkpoint_best" for t in trial_ids],
        **{"cfg.mixstyle.p": p, "cfg.label_smoothing": smoothing, "cfg.loss.kind": loss, "cfg.lr": lr,
           "cfg.model.dropout": dropout},
    ))
    pending = trials.status.isin(ACTIVE_STATUSES)
    trials.loc[pending, ["best_epoch", "epochs_run", "val_macro_auroc", "val_macro_f1", "val_macro_auprc",
                         "val_challenge_score", "selection_value", "wall_time_s"]] = np.nan
    return trials, _epochs(rng, fold_id, trials, quality)


def _algorithm_search(rng, fold_id: str, arm: str, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An algorithm arm's own search: `full`'s space plus the algorithm's declared parameters,
    each drawn from its declared distribution, keyed by the arm (selection "search")."""
    from heartbeatai.study.search_space import declared_space

    trials, epochs = _search(rng, fold_id, n, running=False)
    kind = algorithm_of(arm)
    trials = trials.assign(arm=arm, trial_id=trials["trial_id"] + f"-{kind}", **{"cfg.algorithm.kind": kind})
    for key, dist in declared_space("algorithm", kind).items():
        trials[f"cfg.{key}"] = _drawn(rng, dist, n)
    return trials, epochs.assign(arm=arm, trial_id=epochs["trial_id"] + f"-{kind}")


def _drawn(rng, dist, n: int) -> np.ndarray:
    if dist.choice is not None:
        return rng.choice(np.array(dist.choice, dtype=object), n)
    low, high = dist.uniform or dist.loguniform or dist.randint or dist.lograndint
    logged = dist.loguniform is not None or dist.lograndint is not None
    values = np.exp(rng.uniform(np.log(low), np.log(high), n)) if logged else rng.uniform(low, high, n)
    return np.rint(values).astype(int) if dist.randint or dist.lograndint else values


def _learning_curve(epoch: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Validation AUROC after ``epoch`` (0-based) of a trial that would plateau at ``quality``."""
    return quality - 0.12 * np.exp(-epoch / 2.0)


def _epochs(rng, fold_id: str, trials: pd.DataFrame, quality: np.ndarray) -> pd.DataFrame:
    """Per-epoch rows: every epoch a trial ran; two so far for a running one, none when pending."""
    ran = np.where(trials.status.eq("running"), 2, np.nan_to_num(trials.epochs_run.to_numpy(float), nan=0))
    ran = ran.astype(int) * ~trials.status.eq("pending").to_numpy()
    row = np.repeat(np.arange(len(trials)), ran)
    epoch = np.concatenate([np.arange(k) for k in ran]) if ran.sum() else np.zeros(0, int)
    auroc = _learning_curve(epoch, quality[row]) + rng.normal(0, 0.004, len(row))
    return pd.DataFrame(dict(
        _key("lodo", fold_id, SEARCH_ARM, SEARCH_SEED, "search", ""), trial_id=trials.trial_id.to_numpy()[row], epoch=epoch,
        train_loss=0.25 * np.exp(-epoch / 4) + 0.05, val_loss=0.28 * np.exp(-epoch / 5) + 0.07,
        val_macro_auroc=auroc, val_macro_f1=auroc - 0.25, val_macro_auprc=auroc - 0.4, val_challenge_score=auroc - 0.3,
    ))


def _importances(rng, fold_id: str, trials: pd.DataFrame) -> pd.DataFrame:
    params = [c[len("cfg."):] for c in trials.columns if c.startswith("cfg.")]
    weights = rng.dirichlet(np.linspace(3, 0.5, len(params)))
    completed = trials[trials.status.isin(SCORED_STATUSES)]
    distinct = len(completed.drop_duplicates([f"cfg.{p}" for p in params]))
    return pd.DataFrame(dict(protocol="lodo", fold_id=fold_id, param=params, importance=weights,
                             n_distinct_trials=distinct))


def _run_file(fold_id: str, row: pd.Series, abbrs: list[str]) -> str:
    trial = {"mixstyle": {"p": round(float(row["cfg.mixstyle.p"]), 4), "alpha": 0.1, "mix": "crossdomain"},
             "label_smoothing": round(float(row["cfg.label_smoothing"]), 4),
             "loss": {"kind": str(row["cfg.loss.kind"])},
             "optimizer": {"lr": float(row["cfg.lr"])}, "model": {"dropout": round(float(row["cfg.model.dropout"]), 4)},
             "seed": 0}
    return yaml.safe_dump({"schema_version": 1, "data": {"path": "prepared/demo", "fingerprint": "synthetic"},
                           "fold_id": fold_id, "classes": abbrs, "selection_metric": "val_macro_auroc",
                           "trial": trial, "provenance": {"git_commit": "synthetic"}}, sort_keys=False)


def _best_trial(trials: pd.DataFrame) -> pd.Series:
    return trials.loc[trials.selection_value.idxmax()]


def _best_config(fold_id: str, best: pd.Series, abbrs: list[str]) -> pd.DataFrame:
    return pd.DataFrame([dict(protocol="lodo", fold_id=fold_id, selection="val", metric="val_macro_auroc",
                              value=float(best.selection_value), run_file=_run_file(fold_id, best, abbrs))])


def _consensus(best: list[pd.Series], abbrs: list[str]) -> pd.DataFrame:
    """DESIGN.md's consensus: the median of each numeric field, the most frequent categorical value."""
    chosen = pd.DataFrame(best)
    row = pd.Series({column: (chosen[column].mode().iloc[0] if chosen[column].dtype == object or
                              pd.api.types.is_string_dtype(chosen[column]) else float(chosen[column].median()))
                     for column in chosen.columns if column.startswith("cfg.")})
    # As the real one (analysis/consensus.py): never trained, so no value of its own.
    return pd.DataFrame([dict(protocol="lodo", fold_id=CONSENSUS_FOLD, selection="val", metric=NOT_TRAINED,
                              value=None, run_file=_run_file(CONSENSUS_FOLD, row, abbrs))])


def _test_records(protocol: str, domain: str, sizes: pd.Series) -> int:
    """LODO tests the whole held-out domain, an intra fold one part of it; the fake runs one
    reference fold per matched domain and lets it stand for all its parts, pooled (the whole domain)."""
    return int(sizes[domain]) // (INTRA_K if protocol == "intra" else 1)


def _arm_runs(rng, protocol, fold_id, arms, arm_seeds, abbrs, prevalence, sizes):
    domain = fold_id.split(":")[1]
    test_prev = prevalence.loc[domain].to_numpy()
    if protocol == "lodo" and len(prevalence) > 1:
        train_prev = prevalence.drop(index=domain).mean().to_numpy()
        n_val = int(VAL_FRACTION * sizes.drop(index=domain).sum())
    elif protocol == "reference":  # trained on every domain, d's test records excluded
        train_prev = prevalence.mean().to_numpy()
        n_val = int(VAL_FRACTION * sizes.sum())
    else:
        train_prev = test_prev
        n_val = int(VAL_FRACTION * sizes[domain])
    shift = 0.05 if protocol == "lodo" else 0.0
    n_test = _test_records(protocol, domain, sizes)
    positives = np.rint(test_prev * n_test).astype(int)
    present = (positives > 0) & (positives < n_test)
    reliable = positives >= fake_analysis.MIN_POSITIVES
    # The rarest training classes find no validation positive: their threshold calls the
    # training prevalence positive instead of being tuned (flagged, never a silent 0.5).
    fallback = np.zeros(len(abbrs), bool)
    fallback[np.argsort(train_prev, kind="stable")[:FALLBACK_CLASSES]] = True
    val_positives = np.where(fallback, 0, np.maximum(np.rint(train_prev * n_val), 1))
    runs, folds, classes = [], [], []
    for arm in arms:
        for seed in arm_seeds[:1] if arm == PREVALENCE_ARM else arm_seeds:
            trial_id = PREVALENCE_ARM if arm == PREVALENCE_ARM else f"{arm}-s{seed}"
            selections = ["val", "oracle"] if arm == FULL and protocol == "lodo" and seed == arm_seeds[0] else ["val"]
            for selection in selections:
                key = _key(protocol, fold_id, arm, seed, selection, trial_id)
                boost = 0.01 if selection == "oracle" else 0.0
                runs.append(dict(key, status="completed", epochs_run=9, best_epoch=int(rng.integers(4, 9)),
                                 wall_time_s=float(rng.uniform(200, 400))))
                rare_penalty = shift * (1 + np.log(0.3 / np.clip(test_prev, 0.003, 0.3)) / 2)
                if arm == PREVALENCE_ARM:
                    auroc = np.full(len(abbrs), 0.5)
                else:
                    auroc = np.clip(0.93 - rare_penalty + _ARM_EFFECT.get(arm, -0.005) + boost
                                    + rng.normal(0, 0.015, len(abbrs)), 0.4, 0.995)
                f1 = np.clip((auroc - 0.5) * 1.8 * np.sqrt(np.clip(test_prev, 0.01, 1) / 0.3), 0, 0.95)
                auprc = np.clip(test_prev + (1 - test_prev) * (auroc - 0.5) ** 1.5 * 2.5, 0, 1)
                for split in ("val", "test"):
                    for metric, values in (("macro_auroc", auroc), ("macro_f1", f1), ("macro_auprc", auprc),
                                           ("challenge_score", f1 * 0.9), ("brier", 0.05 + (1 - auroc) * 0.1),
                                           ("cinc_macro_f", f1 * 0.8)):
                        value = float(values[present].mean())
                        width = 0.01 + 0.02 * (protocol == "lodo")
                        folds.append(dict(key, split=split, label_set="noisy", metric=metric, value=value,
                                          ci_low=value - width, ci_high=value + width,
                                          classes_used=json.dumps([a for a, p in zip(abbrs, present) if p])))
                # Drawn as a naive method would: narrow at a handful of positives. Below the
                # minimum the row says the interval is unreliable, and no reader may draw it.
                half = 0.5 / np.sqrt(np.maximum(positives, 1))
                for i, abbr in enumerate(abbrs):
                    figures = {}
                    if present[i]:
                        for name, value, h in (("f1", f1[i], half[i]), ("auroc", auroc[i], half[i] / 2),
                                               ("auprc", auprc[i], half[i])):
                            figures |= {name: float(value), f"{name}_lo": float(max(value - h, 0)),
                                        f"{name}_hi": float(min(value + h, 1))}
                        figures["brier"] = float(0.05 + (1 - auroc[i]) * 0.1)
                    threshold = 1 - train_prev[i] if fallback[i] else rng.uniform(0.2, 0.6)
                    classes.append(dict(key, split="test", label_set="noisy", **{"class": abbr},
                                        positives=int(positives[i]), train_prevalence=float(train_prev[i]),
                                        test_prevalence=float(test_prev[i]), present=bool(present[i]),
                                        interval_reliable=bool(reliable[i]), threshold=float(threshold),
                                        threshold_fallback=bool(fallback[i]),
                                        val_prevalence=float(val_positives[i] / n_val), **figures))
    return pd.DataFrame(runs), pd.DataFrame(folds), pd.DataFrame(classes)


def _predictions(rng, fold_id, abbrs, prevalence, n_records, seed) -> pd.DataFrame:
    """The full arm's scores on the held-out test records and on the training domains' validation records."""
    domain = fold_id.split(":")[1]
    training = [d for d in prevalence.index if d != domain] or [domain]
    frames = []
    for split, where in (("test", [domain] * n_records), ("val", [training[i % len(training)] for i in range(n_records)])):
        labels = rng.uniform(size=(n_records, len(abbrs))) < prevalence.loc[where].to_numpy()
        scores = np.clip(0.55 * labels + rng.beta(2, 5, labels.shape), 0, 1)
        frame = pd.DataFrame(dict(_key("lodo", fold_id, FULL, seed, "val", f"{FULL}-s{seed}"), split=split,
                                  record_id=[f"{d.upper()}{'V' if split == 'val' else ''}{i:05d}" for i, d in enumerate(where)], domain=where))
        wide = ({f"p_{a}": scores[:, i] for i, a in enumerate(abbrs)}
                | {f"y_{a}": labels[:, i] for i, a in enumerate(abbrs)})
        frames.append(pd.concat([frame, pd.DataFrame(wide)], axis=1))
    return pd.concat(frames, ignore_index=True)


def synthetic_ecg(rng, fs: int = 250, seconds: float = 4.0, heart_rate: float = 72.0) -> np.ndarray:
    """12 x T in mV: Gaussian P, QRS and T waves per beat, scaled per lead (McSharry-like, no ODE)."""
    t = np.arange(int(fs * seconds)) / fs
    rr = 60.0 / heart_rate
    phase = np.mod(t, rr) / rr
    waves = ((0.12, 0.18, 0.025), (-0.1, 0.37, 0.008), (1.0, 0.40, 0.010), (-0.25, 0.43, 0.009), (0.3, 0.65, 0.04))
    beat = sum(a * np.exp(-((phase - mu) ** 2) / (2 * (sd / rr) ** 2 * rr ** 2)) for a, mu, sd in waves)
    gains = np.array([0.7, 1.1, 0.5, -0.9, 0.3, 0.8, -0.6, 0.4, 0.9, 1.3, 1.2, 1.0])
    wander = 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3, (12, 1)))
    return gains[:, None] * beat[None, :] + wander + rng.normal(0, 0.01, (12, len(t)))


def _record_views(rng, fold_id, abbrs, prevalence, n_views, seed) -> pd.DataFrame:
    domain = fold_id.split(":")[1]
    rare_first = list(prevalence.loc[domain].sort_values().index)
    rows = []
    for rank in range(n_views):
        abbr = rare_first[rank % len(rare_first)]
        misclassified = rank < n_views // 2
        signal = synthetic_ecg(rng, heart_rate=float(rng.uniform(55, 110)))
        energy = np.abs(np.gradient(signal, axis=1))
        attribution = energy / energy.max() * rng.uniform(0.3, 1.0, (12, 1))
        probabilities = {a: round(float(rng.beta(1, 6)), 3) for a in abbrs}
        probabilities[abbr] = round(float(rng.uniform(0.05, 0.4) if misclassified else rng.uniform(0.6, 0.95)), 3)
        true = sorted({abbr, "NSR"} - ({"NSR"} if abbr != "NSR" and rng.uniform() < 0.7 else set()))
        pred = sorted(a for a, v in probabilities.items() if v >= 0.5)
        rows.append(dict(_key("lodo", fold_id, FULL, seed, "val", f"{FULL}-s{seed}"), record_id=f"{domain.upper()}{rank:05d}",
                         **{"class": abbr}, true_labels=json.dumps(true), pred_labels=json.dumps(pred),
                         probabilities=json.dumps(probabilities), fs=250,
                         signal=json.dumps(np.round(signal, 4).tolist()),
                         attribution=json.dumps(np.round(attribution, 3).tolist()),
                         se_gates=json.dumps({s: np.round(rng.beta(5, 3, n), 3).tolist() for s, n in SE_STAGES.items()}),
                         misclassified=misclassified, rank=rank))
    return pd.DataFrame(rows)
