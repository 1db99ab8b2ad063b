"""Binary cross-entropy per class: the multi-label default of every baseline."""

from __future__ import annotations

from typing import Literal

from heartbeatai.losses.base import LossParams


class BCE(LossParams):
    kind: Literal["bce"] = "bce"

    def terms(self, logits, targets):
        import torch.nn.functional as F

        return F.logsigmoid(logits), F.logsigmoid(-logits)
