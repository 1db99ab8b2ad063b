"""The F1 drop from a reference model to a LODO model, split into prevalence, threshold and
ranking parts that add up (DESIGN.md, Analysis; docs/analysis.md gives the formulas).

Each model M (LODO L, reference R) is evaluated three ways on the same records of the
held-out domain:

- F_M(dep): F1 at M's deployed (validation-tuned) threshold;
- F_M(pc): F1 at that threshold after M's calibrated probabilities are corrected to the
  test prevalence that EM estimates from the unlabeled test records (prior_shift.py):
  what a deployer could recover without labels;
- F_M(best): F1 at M's best threshold on the test records, an upper bound (it uses labels).

The parts are LODO-minus-reference differences of the same step, so they telescope to the
total F_L(dep) - F_R(dep) exactly:

    prevalence = [F_L(dep) - F_L(pc)] - [F_R(dep) - F_R(pc)]
    threshold  = [F_L(pc) - F_L(best)] - [F_R(pc) - F_R(best)]
    ranking    = F_L(best) - F_R(best)

A model here is record-level: the reference may pool out-of-fold predictions of several
intra-source fold models, each record carrying its own model's calibration, threshold and
training prior. Every figure is computed under record weights (B, N), the first row all
ones (the point estimate), the others a paired bootstrap shared by both models and all
seeds, so an interval of a part is that of a paired difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heartbeatai.analysis.prior_shift import adjust_to_prior, em_priors


@dataclass(frozen=True)
class ScoredRecords:
    """One model's scores of the shared records, all (N, C) and on the records' order.

    `calibrated` are un-smoothed, Platt-scaled probabilities under `source_prior` (the
    prevalence of the calibration set, i.e. the model's training-domain validation set);
    `dep_calls` are the deployed calls (raw probability >= deployed threshold) and
    `cut` that threshold in calibrated units, so a prior correction moves the calls.
    """

    calibrated: np.ndarray
    source_prior: np.ndarray
    dep_calls: np.ndarray
    cut: np.ndarray


def weighted_f1(y: np.ndarray, calls: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, C) F1 of calls under record weights (B, N); nan without a weighted positive.
    `calls` are (N, C), or (B, N, C) when each replicate has its own (prior-corrected) calls."""
    if calls.ndim == 3:
        tp = np.einsum("bn,nc,bnc->bc", weights, y.astype(float), calls)
        fp = np.einsum("bn,nc,bnc->bc", weights, (~y).astype(float), calls)
    else:
        tp = weights @ (y & calls)
        fp = weights @ (~y & calls)
    positives = weights @ y
    denominator = 2 * tp + fp + (positives - tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, 2 * tp / denominator, np.nan)


def best_f1(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, C) F1 at the best threshold on the (weighted) records themselves.

    `scores` are (N, C) or (B, N, C) when they differ per replicate. Every distinct score
    is a candidate cut; records with equal scores are called together.
    """
    n_boot, n_records = weights.shape
    out = np.full((n_boot, y.shape[1]), np.nan)
    rows = np.arange(n_boot)[:, None]
    for c in range(y.shape[1]):
        s = scores[:, :, c] if scores.ndim == 3 else np.broadcast_to(scores[:, c], (n_boot, n_records))
        order = np.argsort(-s, axis=1, kind="stable")
        s_desc = s[rows, order]
        w = weights[rows, order]
        pos = w * y[order, c]
        tp = np.cumsum(pos, axis=1)
        called = np.cumsum(w, axis=1)
        total = tp[:, -1:]
        # Only the last record of a run of equal scores is a cut the data can make.
        cut = np.concatenate([s_desc[:, 1:] != s_desc[:, :-1], np.ones((n_boot, 1), bool)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(cut, 2 * tp / (called + total), 0.0)
        out[:, c] = np.where(total[:, 0] > 0, f1.max(axis=1), np.nan)
    return out


def three_evaluations(y: np.ndarray, model: ScoredRecords, weights: np.ndarray) -> dict[str, np.ndarray]:
    """F(dep), F(pc) and F(best) of one model, each (B, C), plus the EM prevalence estimate."""
    dep = weighted_f1(y, model.dep_calls, weights)
    prevalence = em_priors(model.calibrated, model.source_prior, weights)
    corrected = adjust_to_prior(model.calibrated[None], model.source_prior[None], prevalence[:, None, :])
    pc = weighted_f1(y, corrected >= model.cut[None], weights)
    return {"dep": dep, "pc": pc, "best": best_f1(y, corrected, weights), "prevalence_estimate": prevalence}


def split_parts(lodo: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Total and parts (results.schema.DEGRADATION_TOTAL, DEGRADATION_PARTS) from the three
    evaluations of each model (any common shape)."""
    parts = {
        "prevalence": (lodo["dep"] - lodo["pc"]) - (reference["dep"] - reference["pc"]),
        "threshold": (lodo["pc"] - lodo["best"]) - (reference["pc"] - reference["best"]),
        "ranking": lodo["best"] - reference["best"],
    }
    parts["total"] = lodo["dep"] - reference["dep"]
    return parts
