"""The F1 drop from a reference model to a LODO model, split into prevalence, threshold and
ranking parts that add up (DESIGN.md, Analysis; docs/analysis.md gives the formulas).

Each model M (LODO L, reference R) is evaluated three ways on the same records of the
held-out domain:

- F_M(dep): F1 at M's deployed (validation-tuned) threshold;
- F_M(pc): F1 at that threshold after M's calibrated probabilities are corrected by Bayes'
  rule from the prior they were calibrated under to the known test prevalence of the
  records (under each replicate's weights). This is an evaluation, the labels are there,
  and with the true prevalence the part is identified: under equal prevalences the
  correction is the identity and the part is exactly 0 whatever the calibration does on
  the test domain (a calibration shift then shows in the threshold part). The label-free
  estimates a deployer could use instead, EM and BBSE (prior_shift.py), are reported
  beside the truth, never used for the part;
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
seeds, so an interval of a part is that of a paired difference. The trained models are held
fixed: every interval is conditional on these trained models (seed-to-seed variation is not
in it; docs/analysis.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heartbeatai.analysis.prior_shift import adjust_to_prior, bbse_priors, em_priors


@dataclass(frozen=True)
class ScoredRecords:
    """One model's scores of the shared records, all (N, C) and on the records' order.

    `calibrated` are un-smoothed, Platt-scaled probabilities under `source_prior` (the
    prevalence of the calibration set, i.e. the model's training-domain validation set);
    `dep_calls` are the deployed calls (raw probability >= deployed threshold) and
    `cut` that threshold in calibrated units, so a prior correction moves the calls.
    `val_tpr`, `val_fpr` are the deployed calls' rates on the model's own validation
    records, for the BBSE estimate (nan where unknown).
    """

    calibrated: np.ndarray
    source_prior: np.ndarray
    dep_calls: np.ndarray
    cut: np.ndarray
    val_tpr: np.ndarray | None = None
    val_fpr: np.ndarray | None = None


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


def weighted_prevalence(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, C) prevalence of the labels under each row of record weights (B, N)."""
    return (weights @ y.astype(float)) / weights.sum(axis=1, keepdims=True)


def three_evaluations(y: np.ndarray, model: ScoredRecords, weights: np.ndarray) -> dict[str, np.ndarray]:
    """F(dep), F(pc) and F(best) of one model, each (B, C); beside them the true test prevalence
    the correction uses (B, C) and the label-free EM and BBSE estimates of it at the point
    weights only (1, C): they are reported beside the truth, not resampled or used."""
    dep = weighted_f1(y, model.dep_calls, weights)
    truth = weighted_prevalence(y, weights)
    target = truth[:, None, :]
    corrected = adjust_to_prior(model.calibrated[None], model.source_prior[None], target)
    # Where the true prevalence equals the source prior the correction is the identity and the
    # calls are the deployed ones by definition: re-deriving them through the calibration map
    # (corrected >= cut) could differ where Platt saturates to 1.0 or un-smoothing clips to 0.
    identity = target == model.source_prior[None]
    pc_calls = np.where(identity, model.dep_calls[None], corrected >= model.cut[None])
    pc = weighted_f1(y, pc_calls, weights)
    point = weights[:1]
    if model.val_tpr is None or model.val_fpr is None:
        bbse = np.full((1, y.shape[1]), np.nan)
    else:
        bbse = bbse_priors(model.dep_calls, model.val_tpr, model.val_fpr, point)
    return {"dep": dep, "pc": pc, "best": best_f1(y, corrected, weights), "test_prevalence": truth,
            "em_prevalence": em_priors(model.calibrated, model.source_prior, point), "bbse_prevalence": bbse}


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
