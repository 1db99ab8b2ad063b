"""Calibrated probabilities, their correction to another class prior, and label-free
estimates of that prior (label shift).

The degradation split's prevalence part corrects each model's probabilities to the held-out
domain's *known* test prevalence (an evaluation: the labels are there), and reports beside
it what a deployer could have estimated from the unlabeled test records. The correction is
Bayes' rule and holds only for calibrated probabilities, per class (each class of a
multi-label model is its own binary problem), so the probabilities go through two steps
first:

1. un-smoothing: with label smoothing e the model was trained towards y(1 - e) + e/2, so
   every output is pulled towards e/2 and 1 - e/2; q = (p - e/2) / (1 - e) undoes it
   (without this, EM drove a 5% class to prevalence 1.0 in a probe at e = 0.1);
2. Platt scaling on the model's own training-domain validation records (Platt 1999, with
   his smoothed targets (n+ + 1)/(n+ + 2) and 1/(n- + 2), which keep the fit finite with
   a single positive). Focal, asymmetric and pos_weight losses all distort probabilities;
   Platt corrects a monotone distortion with two parameters, which a few validation
   positives can support where isotonic regression cannot.

The two label-free estimates of the test prevalence:

- EM (Saerens, Latinne & Decaestecker 2002): the prior that makes the mean corrected
  posterior equal itself. It trusts the calibrated probabilities' likelihood ratios, so a
  calibration that does not carry over to the test domain moves it far (issue 19: a 5%
  class estimated at 0.48 under a +1 logit offset);
- BBSE (Lipton, Wang & Smola 2018), for one binary class the adjusted classify-and-count
  of Forman (2008): the deployed calls' rate on the test records, P_t(call), solved for
  the prior through the calls' TPR and FPR on the model's validation records. It needs no
  calibration, only that the calls' error rates carry over (p(x | y) unchanged).

Neither is identified when p(x | y) itself moves (a style shift): there no estimate from
unlabeled records is, which is why the table says how far each one is from the truth.

Everything is vectorised over classes: arrays are (records, classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit

_EPS = 1e-6


def unsmooth(probabilities: np.ndarray, epsilon: float) -> np.ndarray:
    """Undo multi-label label smoothing y(1 - e) + e/2, clipped to [0, 1]."""
    p = np.asarray(probabilities, dtype=float)
    if epsilon <= 0:
        return p.copy()
    return np.clip((p - epsilon / 2) / (1 - epsilon), 0.0, 1.0)


@dataclass(frozen=True)
class Platt:
    """Per-class Platt scaling on the logit: q = sigmoid(a * logit(p) + b)."""

    a: np.ndarray
    b: np.ndarray
    fitted: np.ndarray  # False where the calibration set had no positive or no negative (identity kept)

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        z = logit(np.clip(np.asarray(probabilities, dtype=float), _EPS, 1 - _EPS))
        return expit(self.a * z + self.b)


def fit_platt(probabilities: np.ndarray, y: np.ndarray) -> Platt:
    """Fit one Platt scaling per class on (records, classes) probabilities and labels."""
    p = np.atleast_2d(np.asarray(probabilities, dtype=float))
    labels = np.atleast_2d(np.asarray(y, dtype=bool))
    n_classes = p.shape[1]
    a, b, fitted = np.ones(n_classes), np.zeros(n_classes), np.zeros(n_classes, dtype=bool)
    z_all = logit(np.clip(p, _EPS, 1 - _EPS))
    for c in range(n_classes):
        pos, neg = int(labels[:, c].sum()), int((~labels[:, c]).sum())
        if pos == 0 or neg == 0:
            continue
        target = np.where(labels[:, c], (pos + 1) / (pos + 2), 1 / (neg + 2))
        z = z_all[:, c]

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            q = expit(params[0] * z + params[1])
            q = np.clip(q, 1e-12, 1 - 1e-12)
            value = -np.sum(target * np.log(q) + (1 - target) * np.log(1 - q))
            residual = q - target
            return float(value), np.array([np.sum(residual * z), np.sum(residual)])

        result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        a[c], b[c] = result.x
        fitted[c] = True
    return Platt(a, b, fitted)


def expected_calibration_error(q: np.ndarray, y: np.ndarray, bins: int = 10) -> np.ndarray:
    """Per-class expected calibration error over equal-width probability bins."""
    q = np.atleast_2d(np.asarray(q, dtype=float))
    labels = np.atleast_2d(np.asarray(y, dtype=float))
    index = np.minimum((q * bins).astype(int), bins - 1)
    out = np.zeros(q.shape[1])
    for c in range(q.shape[1]):
        counts = np.bincount(index[:, c], minlength=bins)
        mean_q = np.bincount(index[:, c], weights=q[:, c], minlength=bins)
        mean_y = np.bincount(index[:, c], weights=labels[:, c], minlength=bins)
        filled = counts > 0
        out[c] = np.sum(np.abs(mean_q[filled] - mean_y[filled])) / max(len(q), 1)
    return out


def adjust_to_prior(q: np.ndarray, source_prior: np.ndarray, target_prior: np.ndarray) -> np.ndarray:
    """Posteriors under `source_prior` re-weighted to `target_prior` (Bayes' rule, per class)."""
    q = np.asarray(q, dtype=float)
    source = np.clip(np.asarray(source_prior, dtype=float), _EPS, 1 - _EPS)
    target = np.clip(np.asarray(target_prior, dtype=float), _EPS, 1 - _EPS)
    up = q * (target / source)
    down = (1 - q) * ((1 - target) / (1 - source))
    return up / np.maximum(up + down, 1e-300)


def em_priors(q: np.ndarray, source_prior: np.ndarray, weights: np.ndarray,
              tol: float = 1e-8, max_iter: int = 1000) -> np.ndarray:
    """`em_prior` for every row of `weights` (B, records) at once: (B, classes).

    The EM update of a class's prior depends on that class's column alone, so each
    (replicate, class) cell iterates until its own change falls below `tol` and then
    stays; only the cells still moving are computed. A bootstrap of B replicates thus
    costs one vectorised EM instead of B Python loops of up to `max_iter` steps, and a
    slow rare class no longer keeps every other class iterating.
    """
    q = np.atleast_2d(np.asarray(q, dtype=float))
    w = np.asarray(weights, dtype=float)
    w = w / w.sum(axis=1, keepdims=True)
    source = np.broadcast_to(np.clip(np.asarray(source_prior, dtype=float), _EPS, 1 - _EPS), q.shape)
    # The first step starts from the source prior, record by record (it may differ per record).
    prior = np.clip(w @ adjust_to_prior(q, source, source), _EPS, 1 - _EPS)
    moving = np.max(np.abs(prior[:, None, :] - source[None]), axis=1) >= tol  # (B, C)
    replicate, cls = np.nonzero(moving)
    q_t, source_t = q.T, source.T  # (C, records)
    for _ in range(max_iter - 1):
        if not len(replicate):
            break
        current = prior[replicate, cls][:, None]
        column, source_column = q_t[cls], source_t[cls]
        up = column * (current / source_column)
        down = (1 - column) * ((1 - current) / (1 - source_column))
        updated = np.clip(np.sum(w[replicate] * (up / np.maximum(up + down, 1e-300)), axis=1), _EPS, 1 - _EPS)
        still = np.abs(updated - current[:, 0]) >= tol
        prior[replicate, cls] = updated
        replicate, cls = replicate[still], cls[still]
    return prior


def em_prior(q: np.ndarray, source_prior: np.ndarray, weights: np.ndarray | None = None,
             tol: float = 1e-8, max_iter: int = 1000) -> np.ndarray:
    """Saerens et al. (2002)'s EM estimate of each class's prevalence on unlabeled records.

    `q` are calibrated posteriors (records, classes) under `source_prior`; `weights`
    (records,) lets a bootstrap replicate reuse the records. Returns the prior estimate
    (`em_priors` for one replicate).
    """
    q = np.atleast_2d(np.asarray(q, dtype=float))
    w = np.ones(len(q)) if weights is None else np.asarray(weights, dtype=float)
    return em_priors(q, source_prior, w[None, :], tol=tol, max_iter=max_iter)[0]


def bbse_priors(calls: np.ndarray, tpr: np.ndarray, fpr: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Black-box shift estimates of each class's prevalence (Lipton et al. 2018), (B, classes).

    `calls` are the deployed calls on the unlabeled records (records, classes); `tpr`, `fpr`
    the calls' true and false positive rates on the model's own validation records, per
    record (records, classes) so that pooled fold models each bring their own. Under label
    shift each record's call is positive with probability FPR + pi (TPR - FPR); the
    weighted mean over records of that identity, solved for pi, is for one model the
    adjusted classify-and-count (P_t(call) - FPR) / (TPR - FPR). Clipped to [0, 1]; nan
    where TPR <= FPR (the calls carry no information on the prior) or a rate is undefined.
    """
    w = np.asarray(weights, dtype=float)
    w = w / w.sum(axis=1, keepdims=True)
    called = w @ np.asarray(calls, dtype=float)
    floor = w @ np.asarray(fpr, dtype=float)
    gap = w @ (np.asarray(tpr, dtype=float) - np.asarray(fpr, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.clip((called - floor) / gap, 0.0, 1.0)
    return np.where(gap > 0, estimate, np.nan)


def call_rates(calls: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (TPR, FPR) of calls against labels; nan without a positive (TPR) or a negative (FPR)."""
    calls, labels = np.atleast_2d(np.asarray(calls, dtype=bool)), np.atleast_2d(np.asarray(y, dtype=bool))
    positives, negatives = labels.sum(axis=0), (~labels).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(positives > 0, (calls & labels).sum(axis=0) / positives, np.nan)
        fpr = np.where(negatives > 0, (calls & ~labels).sum(axis=0) / negatives, np.nan)
    return tpr, fpr


# An estimate is "far" from the true prevalence when it is off by more than a factor of 2 or
# by more than 0.05 absolute. The factor is what issue 19 counted (EM > 2x off in 71% of the
# demo's cells) and is the size that matters to a Bayes correction of a rare class (a factor
# 2 moves every corrected logit by up to log 2); the absolute bound catches common classes,
# for which no estimate in [0, 1] can be 2x off above a prevalence of 0.5.
FAR_FACTOR = 2.0
FAR_ABSOLUTE = 0.05


def far_from_truth(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Whether a prevalence estimate is far from the truth (FAR_FACTOR, FAR_ABSOLUTE); an
    undefined (nan) estimate is far: a deployer would have nothing to correct with."""
    estimate, truth = np.asarray(estimate, dtype=float), np.asarray(truth, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = estimate / truth
        far = (np.abs(estimate - truth) > FAR_ABSOLUTE) | (ratio > FAR_FACTOR) | (ratio < 1 / FAR_FACTOR)
    return far | ~np.isfinite(estimate)
