"""Focal loss per class (Lin et al., ICCV 2017): -[a y (1-p)^g log p + (1-a)(1-y) p^g log(1-p)]."""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.losses.base import LossParams


class Focal(LossParams):
    """Written per term so soft (smoothed) targets weight each term, which equals the
    usual p_t form for hard targets. `alpha=None` leaves both terms unweighted."""

    kind: Literal["focal"] = "focal"
    gamma: float = hparam(2.0, ge=0.0, search={"uniform": [0.0, 5.0]})
    alpha: float | None = hparam(0.25, ge=0.0, le=1.0)
    # The focusing weights assume y in {0, 1}; with a mixed target they weight a blend.
    hard_targets_only: ClassVar[bool] = True
    paper: ClassVar[str] = "Lin et al., Focal loss for dense object detection, ICCV 2017"

    def terms(self, logits, targets):
        import torch
        import torch.nn.functional as F

        p = torch.sigmoid(logits)
        positive = (1.0 - p).pow(self.gamma) * F.logsigmoid(logits)
        negative = p.pow(self.gamma) * F.logsigmoid(-logits)
        if self.alpha is not None:
            positive, negative = self.alpha * positive, (1.0 - self.alpha) * negative
        return positive, negative
