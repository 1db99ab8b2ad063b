"""The torch side of the multi-label losses (the registry and formulas: heartbeatai.losses).

Every loss takes float targets in [0, 1] of shape (B, C) and applies, when asked,
multi-label label smoothing y(1 - e) + e/2 (each class is its own binary problem, so
the smoothed target moves toward 1/2, not toward 1/C). `pos_weight` (C,) scales the
positive term of each class, as in `nn.BCEWithLogitsLoss`. Log-probabilities come from
`logsigmoid` so large logits stay finite.

Parameters arrive checked and defaulted by the trial configuration (its `loss` section
and `label_smoothing`); the losses repeat neither.
"""

from __future__ import annotations

import torch
from torch import nn

from heartbeatai.losses.base import LossParams


def smooth_multilabel(targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """y(1 - e) + e/2: a hard 1 becomes 1 - e/2, a hard 0 becomes e/2."""
    return targets * (1.0 - epsilon) + epsilon / 2.0


class MultiLabelLoss(nn.Module):
    """`params.terms` (the loss's formula) with label smoothing, class weights and the mean."""

    def __init__(self, params: LossParams, label_smoothing: float, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.params = params
        self.label_smoothing = label_smoothing
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.elementwise(logits, targets).mean()

    def per_record(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) each record's loss, the mean over its classes: what a per-domain risk averages."""
        return self.elementwise(logits, targets).mean(dim=1)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, C) the loss of every record and class."""
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        logits = logits.float()  # bf16 autocast logits: the loss itself runs in fp32
        targets = targets.to(logits.dtype)
        if self.label_smoothing:
            targets = smooth_multilabel(targets, self.label_smoothing)
        positive, negative = self.params.terms(logits, targets)
        if self.pos_weight is not None:
            positive = positive * self.pos_weight
        return -(targets * positive + (1.0 - targets) * negative)


def build_loss(params: LossParams, *, label_smoothing: float, pos_weight: torch.Tensor | None) -> nn.Module:
    """The configured loss, called as `loss(logits, targets)` -> scalar mean."""
    return MultiLabelLoss(params, label_smoothing, pos_weight)
