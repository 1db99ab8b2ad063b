"""End to end: on the synthetic benchmark with one kind of shift switched on, the
degradation split (study/degradation.py) points at that kind.

For each shift kind a benchmark of six classes with clear signatures at 100 Hz is
generated, prepared and split into folds by the platform's own code; the platform's
model is trained in-process on the held-out domain's LODO fold and on one intra fold of
that domain (train/val from the folds file, best-validation epoch, thresholds tuned on
val); each is tested on its fold's test records with the study's `evaluate_test`, and
`degradation_table` over those predictions and class_metrics rows gives the split, as
the study's analysis does.

- prevalence only (shift 1, chapman held out): the signals are drawn alike everywhere,
  so (a) ranking stays put while (c) prevalence moves where the prevalence moved;
- style only (shift 2, georgia held out): prevalences are alike everywhere, so (c) stays
  near 0 while the loss shows in (a) ranking or (b) threshold transfer.

Margins come from the data, not from pinned figures: the bootstrap half-width of the
AUROCs, the same split computed with the intra runs on both sides (what (b) and (c) read
with no change of domain), and each part's size under the other kind of shift.
Slow (1-2 minutes on two cores); `-s` prints the figures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from heartbeatai.data.folds import fold_records, read_folds, write_folds
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.synthetic import clean_labels, write_benchmark
from heartbeatai.study.degradation import degradation_table
from heartbeatai.study.evaluation import evaluate_test
from heartbeatai.training.loop import run_training
from heartbeatai.training.predict import predict
from heartbeatai.training.spec import TrainSpec
from train_fixtures import tiny_trial

pytestmark = pytest.mark.slow

CLASSES = ("NSR", "AF", "RBBB", "LBBB", "SB", "STach")
DOMAINS = ("cpsc", "ptbxl", "georgia", "chapman")
# The held-out domain per shift kind: under prevalence shift chapman, whose prevalences are
# far from the other three's (SB 0.38 vs <= 0.16, STach 0.15 vs <= 0.12, RBBB 0.04 vs 0.27
# in cpsc) and which has every class of CLASSES; under style shift georgia, the noisiest
# recordings (most EMG, wander and electrode-motion artefacts) with its own gain and placement.
HELD_OUT = {"prevalence": "chapman", "style": "georgia"}
SHIFT = {"prevalence": 1.0, "style": 2.0}
PER_DOMAIN = 400  # records of each training domain
# The held-out domain is larger so its intra folds train on as many records as LODO does
# (intra: 4/5 of the domain; LODO: the three others), the two protocols differing in the
# domain of their training data, not in its amount.
HELD_OUT_RECORDS = 1500
FS = 100
SEED = 0


def _train_and_test(data: Path, fold_id: str, protocol: str, folds: pd.DataFrame, out: Path) -> dict:
    """Train one fold in-process, keep the best-validation checkpoint, test it like the study does."""
    spec = TrainSpec(trial=tiny_trial(**{"optim.epochs": 8, "optim.batch_size": 32, "optim.lr": 0.01,
                                         "preprocess.crop_seconds": 5.0, "preprocess.eval_stride_seconds": 2.5}),
                     data_path=str(data), fold_id=fold_id, classes=CLASSES, out_dir=str(out))
    best = {"value": -np.inf}
    keep = out / fold_id.replace(":", "_")

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is not None and metrics[spec.selection_metric] > best["value"]:
            best["value"] = metrics[spec.selection_metric]
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(checkpoint_dir, keep)

    run_training(spec, report=report, device=torch.device("cpu"), loader_workers=0)
    split = fold_records(folds, fold_id)
    dataset = PreparedDataset(data)
    train_prevalence = dataset.labels(list(CLASSES))[dataset.index_of(split["train"])].mean(axis=0)
    ids, probs, thresholds = predict(keep, data, split["test"], device=torch.device("cpu"))
    rows = dataset.index_of(ids)
    key = {"study": "synthetic", "protocol": protocol, "fold_id": fold_id, "arm": "full", "seed": SEED,
           "selection": "val", "trial_id": fold_id}
    return evaluate_test(ids, dataset.records["domain"].to_numpy()[rows], dataset.labels(list(CLASSES))[rows],
                         probs, thresholds, CLASSES, train_prevalence, key,
                         y_clean=clean_labels(dataset, ids, list(CLASSES)), n_boot=200, seed=SEED)


def _degradation(tmp: Path, shift_kind: str) -> pd.DataFrame:
    held_out = HELD_OUT[shift_kind]
    training = tuple(d for d in DOMAINS if d != held_out)
    # A domain's profile is its default moved towards the fixed reference hospital, and its
    # records depend on the seed and domain only: two writes make one benchmark.
    sources = [write_benchmark(tmp / f"raw_{name}", n, domains=domains, shift=SHIFT[shift_kind],
                               shift_kinds=[shift_kind], fs=FS, seconds=10.0, seed=SEED, workers=2)
               for name, domains, n in (("training", training, PER_DOMAIN * len(training)),
                                        ("held_out", (held_out,), HELD_OUT_RECORDS))]
    data = tmp / "prepared"
    prepare(sources, data, PrepareSettings(fs=FS, max_seconds=10.0), workers=2, progress=False)
    write_folds(data, "lodo")
    write_folds(data, "intra")
    tables = []
    for protocol in ("lodo", "intra"):
        folds, _ = read_folds(data, protocol)
        for fold_id in dict.fromkeys(folds["fold_id"]):
            # Intra: one split of the held-out domain (its fold 0), as a study with
            # folds.intra_per_domain = 1 runs it.
            if fold_id in (f"lodo:{held_out}", f"intra:{held_out}:0"):
                tables.append(_train_and_test(data, fold_id, protocol, folds, tmp / "runs"))
    predictions = pd.concat([t["predictions"] for t in tables], ignore_index=True)
    class_metrics = pd.concat([t["class_metrics"] for t in tables], ignore_index=True)
    f1, auroc = _split(degradation_table(predictions, class_metrics, n_boot=200, seed=SEED), held_out)
    # The same split with the intra runs on both sides: what the threshold and prevalence
    # parts read with no change of domain (finite-sample optimism of the best threshold,
    # the sampling difference of train and test prevalence): the null they are judged by.
    intra = {name: frame[frame["protocol"] == "intra"] for name, frame in
             (("predictions", predictions), ("class_metrics", class_metrics))}
    same_domain = {name: pd.concat([frame, frame.assign(protocol="lodo")], ignore_index=True)
                   for name, frame in intra.items()}
    null, _ = _split(degradation_table(same_domain["predictions"], same_domain["class_metrics"],
                                       n_boot=200, seed=SEED), held_out)
    f1["threshold_null"], f1["prevalence_null"] = null["threshold_part"], null["prevalence_part"]
    # Half-width of the bootstrap intervals of the two AUROCs a ranking part compares.
    f1["ranking_noise"] = ((auroc["intra_hi"] - auroc["intra_lo"]) + (auroc["lodo_hi"] - auroc["lodo_lo"])) / 4
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\n{shift_kind}-only shift, {held_out} held out (F1, clean labels):")
        print(f1[["train_prevalence", "test_prevalence", "intra", "lodo", "ranking_part", "ranking_noise",
                  "threshold_part", "threshold_null", "prevalence_part", "prevalence_null"]].round(3))
    return f1


def _split(table: pd.DataFrame, domain: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The F1 and AUROC rows of one domain against the clean labels, indexed by class."""
    rows = table[(table["label_set"] == "clean") & (table["domain"] == domain)]
    return tuple(rows[rows["metric"] == m].set_index("class") for m in ("f1", "auroc"))


@pytest.fixture(scope="module")
def prevalence_shift(tmp_path_factory) -> pd.DataFrame:
    torch.set_num_threads(1)
    return _degradation(tmp_path_factory.mktemp("prevalence"), "prevalence")


@pytest.fixture(scope="module")
def style_shift(tmp_path_factory) -> pd.DataFrame:
    torch.set_num_threads(1)
    return _degradation(tmp_path_factory.mktemp("style"), "style")


def _ranking_loss(f1: pd.DataFrame) -> pd.Series:
    return (-f1["ranking_part"]).clip(lower=0)


def _threshold_loss(f1: pd.DataFrame) -> pd.Series:
    """Threshold-transfer loss beyond what the same split reads within the domain."""
    return (f1["threshold_null"] - f1["threshold_part"]).clip(lower=0)


def test_prevalence_only_shift_shows_in_the_prevalence_part_not_in_ranking(prevalence_shift, style_shift):
    f1 = prevalence_shift
    moved = (f1["train_prevalence"] / f1["test_prevalence"]).pipe(np.log).abs() > np.log(2)
    assert moved.sum() >= 3, "the held-out domain should differ at least twofold in prevalence for several classes"
    # (c) is there: beyond the same-domain null for the classes whose prevalence moved, and
    # in the direction of the move (rarer in training -> the test domain's own prevalence helps).
    beyond_null = f1["prevalence_part"].abs() > f1["prevalence_null"].abs()
    assert (moved & beyond_null).sum() >= 3
    direction = np.sign(f1["test_prevalence"] - f1["train_prevalence"])
    assert (np.sign(f1["prevalence_part"])[moved & beyond_null] == direction[moved & beyond_null]).all()
    # ... and it is this shift's own part: far larger than under a style shift.
    assert f1["prevalence_part"].abs().sum() > 2 * style_shift["prevalence_part"].abs().sum()
    # (a) is not: each class's AUROC loss within its bootstrap noise or below its prevalence
    # part, and all of them together a small fraction of (c).
    ranking_loss = _ranking_loss(f1)
    assert ((ranking_loss <= 2 * f1["ranking_noise"]) | (ranking_loss < f1["prevalence_part"].abs())).all()
    assert ranking_loss.sum() < f1["prevalence_part"].abs().sum() / 4


def test_style_only_shift_shows_in_ranking_or_threshold_not_in_prevalence(style_shift, prevalence_shift):
    f1 = style_shift
    ranking_loss, threshold_loss = _ranking_loss(f1), _threshold_loss(f1)
    # (a) or (b) is there: most classes lose ranking beyond the bootstrap noise or lose to
    # threshold transfer beyond the same-domain null by more than their prevalence part ...
    lost = (ranking_loss > 2 * f1["ranking_noise"]) | (threshold_loss > f1["prevalence_part"].abs())
    assert lost.sum() >= len(f1) // 2
    # ... and it is this shift's own loss: far larger than under a prevalence shift.
    style_loss = (ranking_loss + threshold_loss).sum()
    assert style_loss > 2 * (_ranking_loss(prevalence_shift) + _threshold_loss(prevalence_shift)).sum()
    # (c) is not: prevalences match across domains, so the prevalence part is a small
    # fraction of the style loss.
    assert f1["prevalence_part"].abs().sum() < style_loss / 4
