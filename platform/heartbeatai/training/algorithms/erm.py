"""Empirical risk minimisation: the configured loss on the pooled training domains.

DomainBed's strongest baseline under training-domain model selection (Gulrajani and
Lopez-Paz, ICLR 2021), and the paper's own training.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams


class ERMParams(AlgorithmParams):
    kind: Literal["erm"] = "erm"
    multilabel: ClassVar[str] = "native: the configured per-class loss, nothing added"
    paper: ClassVar[str] = "Vapnik, Statistical Learning Theory, 1998"


class ERM(Algorithm):
    Params = ERMParams

    def update(self, batch):
        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            logits = self.network(batch["x"], batch.get("demographics"), batch["domain"])
        loss = self.loss(logits.float(), batch["y"])
        self.step(loss)
        return {"loss": loss.detach()}
