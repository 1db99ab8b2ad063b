"""Asymmetric loss (Ridnik et al., ICCV 2021), with the mean instead of the paper code's sum.

Negatives use the shifted probability p_m = max(p - clip, 0), which discards very easy
negatives entirely, and a stronger focusing exponent than positives: with 26 rare classes
most of the label matrix is easy negatives. Defaults are the paper's multi-label ones.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.losses.base import LossParams


class ASL(LossParams):
    kind: Literal["asl"] = "asl"
    gamma_neg: float = hparam(4.0, ge=0.0, search={"uniform": [1.0, 6.0]})
    gamma_pos: float = hparam(0.0, ge=0.0, search={"uniform": [0.0, 2.0]})
    clip: float = hparam(0.05, ge=0.0, lt=1.0, search={"uniform": [0.0, 0.2]})
    hard_targets_only: ClassVar[bool] = True
    paper: ClassVar[str] = "Ridnik et al., Asymmetric loss for multi-label classification, ICCV 2021"

    def terms(self, logits, targets):
        import torch
        import torch.nn.functional as F

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
