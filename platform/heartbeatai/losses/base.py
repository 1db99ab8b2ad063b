"""What every multi-label loss declares: its kind, its parameters and its two log-likelihood terms.

A loss is one module holding a subclass of `LossParams` (the parameters, with their
defaults, bounds and search distributions beside them) and one registry line in
losses/__init__.py. The subclass's `terms` is the loss's formula; module.MultiLabelLoss
adds what all of them share (label smoothing, class weights, the mean). Parameter
models import no torch, so the trial configuration that holds them stays light; `terms`
imports it when a loss is computed.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from heartbeatai.hparams import StrictModel

if TYPE_CHECKING:
    import torch


class LossParams(StrictModel, abc.ABC):
    """Parameters of one loss kind; `kind` (a one-value Literal) selects it in `loss.kind`."""

    kind: str
    # Weight each class's positive term by negatives / positives in the training labels.
    pos_weight: bool = False
    # Where a target's value between 0 and 1 has no meaning for the formula (mixed targets).
    hard_targets_only: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    @abc.abstractmethod
    def terms(self, logits: "torch.Tensor", targets: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(positive, negative) log-likelihood terms, each (B, C), focusing included."""
