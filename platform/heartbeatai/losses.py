"""Multi-label losses on logits: BCE, focal and asymmetric (ASL), mean-reduced.

Every loss takes float targets in [0, 1] of shape (B, C) and applies, when asked,
multi-label label smoothing y(1 - e) + e/2 (each class is its own binary problem, so
the smoothed target moves toward 1/2, not toward 1/C). `pos_weight` (C,) scales the
positive term of each class, as in `nn.BCEWithLogitsLoss`. Log-probabilities come from
`logsigmoid` so large logits stay finite.

Parameters arrive checked and defaulted by the trial configuration (LossConfig and
`label_smoothing` in heartbeatai.config); the losses repeat neither.
"""

from __future__ import annotations

import abc
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LossKind = Literal["bce", "focal", "asl"]


def smooth_multilabel(targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """y(1 - e) + e/2: a hard 1 becomes 1 - e/2, a hard 0 becomes e/2."""
    return targets * (1.0 - epsilon) + epsilon / 2.0


class _MultiLabelLoss(nn.Module, abc.ABC):
    def __init__(self, label_smoothing: float, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        logits = logits.float()  # bf16 autocast logits: the loss itself runs in fp32
        targets = targets.to(logits.dtype)
        if self.label_smoothing:
            targets = smooth_multilabel(targets, self.label_smoothing)
        positive, negative = self.terms(logits, targets)
        if self.pos_weight is not None:
            positive = positive * self.pos_weight
        return -(targets * positive + (1.0 - targets) * negative).mean()

    @abc.abstractmethod
    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) log-likelihood terms, each (B, C), focusing included."""


class BinaryCrossEntropy(_MultiLabelLoss):
    def terms(self, logits, targets):
        return F.logsigmoid(logits), F.logsigmoid(-logits)


class FocalLoss(_MultiLabelLoss):
    """Lin et al. (ICCV 2017): -[a y (1-p)^g log p + (1-a)(1-y) p^g log(1-p)].

    Written per term so soft (smoothed) targets weight each term, which equals the
    usual p_t form for hard targets. `alpha=None` leaves both terms unweighted.
    """

    def __init__(self, gamma: float, alpha: float | None, label_smoothing: float, pos_weight) -> None:
        super().__init__(label_smoothing, pos_weight)
        self.gamma = gamma
        self.alpha = alpha

    def terms(self, logits, targets):
        p = torch.sigmoid(logits)
        positive = (1.0 - p).pow(self.gamma) * F.logsigmoid(logits)
        negative = p.pow(self.gamma) * F.logsigmoid(-logits)
        if self.alpha is not None:
            positive, negative = self.alpha * positive, (1.0 - self.alpha) * negative
        return positive, negative


class AsymmetricLoss(_MultiLabelLoss):
    """ASL (Ridnik et al., ICCV 2021) with mean instead of the paper code's sum.

    Negatives use the shifted probability p_m = max(p - clip, 0), which discards very
    easy negatives entirely, and a stronger focusing exponent than positives: with 26
    rare classes most of the label matrix is easy negatives.
    """

    def __init__(self, gamma_neg: float, gamma_pos: float, clip: float, label_smoothing: float, pos_weight) -> None:
        super().__init__(label_smoothing, pos_weight)
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip

    def terms(self, logits, targets):
        p = torch.sigmoid(logits)
        positive = (1.0 - p).pow(self.gamma_pos) * F.logsigmoid(logits)
        if self.clip:
            # p_m <= 1 - clip, so log(1 - p_m) stays finite.
            p_shifted = (p - self.clip).clamp(min=0.0)
            log_not_shifted = torch.log1p(-p_shifted)
        else:
            p_shifted, log_not_shifted = p, F.logsigmoid(-logits)
        negative = p_shifted.pow(self.gamma_neg) * log_not_shifted
        return positive, negative


def build_loss(
    kind: LossKind,
    *,
    label_smoothing: float,
    pos_weight: torch.Tensor | None,
    focal_gamma: float,
    focal_alpha: float | None,
    asl_gamma_neg: float,
    asl_gamma_pos: float,
    asl_clip: float,
) -> nn.Module:
    """The loss named by `kind`, called as `loss(logits, targets)` -> scalar mean.

    Every parameter is required, the other kinds' included: the defaults are
    LossConfig's, and `training.factory.loss_from_config` passes them all.
    """
    if kind == "bce":
        return BinaryCrossEntropy(label_smoothing, pos_weight)
    if kind == "focal":
        return FocalLoss(focal_gamma, focal_alpha, label_smoothing, pos_weight)
    if kind == "asl":
        return AsymmetricLoss(asl_gamma_neg, asl_gamma_pos, asl_clip, label_smoothing, pos_weight)
    # Reached only when LossKind gains a name without a branch here: the config's
    # Literal admits the name, so this is the one place that can notice.
    raise ValueError(f"unknown loss kind {kind!r}: expected 'bce', 'focal' or 'asl'")
