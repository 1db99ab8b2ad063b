"""V-REx: the configured loss plus the variance of the training domains' risks.

Krueger et al., Out-of-distribution generalization via risk extrapolation (REx), ICML 2021;
DomainBed's `VREx` is the reference implementation. Multi-label: a domain's risk is the
configured per-class loss (BCE, focal or ASL, label smoothing included) averaged over that
domain's records in the batch, never a softmax cross-entropy. Batches here mix domains
(DomainBed draws one minibatch per domain), so the risks are over the domains present in
the batch, each weighted equally; with one domain present the penalty is zero.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import AlgorithmParams, AnnealedPenalty, domain_risks


class VRExParams(AlgorithmParams):
    kind: Literal["vrex"] = "vrex"
    # DomainBed: default 10, searched as 10**U(-1, 5).
    penalty_weight: float = hparam(10.0, ge=0.0, search={"loguniform": [0.1, 1.0e5]})
    # Penalty weight 1 until this share of the run, then the full weight and fresh optimiser
    # moments (DomainBed, after IRM: Adam does not like the jump in gradient scale). DomainBed:
    # 500 of its 5,000 steps, searched as int(10**U(0, 4)) steps; here a share of the run
    # (Algorithm.step_at), searched over the shares DomainBed's draws give.
    anneal_fraction: float = hparam(0.1, ge=0.0, le=1.0, search={"loguniform": [0.001, 0.5]})
    multilabel: ClassVar[str] = ("a domain's risk is the configured per-class loss over its records; "
                                 "the penalty is the variance of those risks")
    paper: ClassVar[str] = "Krueger et al., Out-of-distribution generalization via risk extrapolation, ICML 2021"


class VREx(AnnealedPenalty):
    Params = VRExParams
    penalty_over_global_batch = True

    def update(self, batch):
        from heartbeatai.training.algorithms.distributed import gather_rows
        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            logits = self.network(batch["x"], batch.get("demographics"), batch["domain"])
        # The domains' risks over the global batch (every DDP worker's records): the objective is
        # the same function of the same records whatever the worker count.
        per_record = gather_rows(self.loss.per_record(logits.float(), batch["y"]))
        risks = domain_risks(per_record, gather_rows(batch["domain"]), self.n_domains)
        risk = risks.mean()
        penalty = ((risks - risk) ** 2).mean()
        return self.step_penalised(risk, penalty)

