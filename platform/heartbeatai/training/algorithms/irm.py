"""IRM: the training domains' risks plus how far a shared classifier is from optimal in each
domain, measured by the gradient of the domain's risk with respect to a dummy scale of the
logits (IRMv1).

Arjovsky et al., Invariant risk minimization, arXiv:1907.02893, 2019; DomainBed's `IRM` is
the reference implementation, its unbiased estimate of the squared gradient included: the
product of the gradients on two halves of the domain's records (even and odd positions
among them). Multi-label: the logits of every class are multiplied by one scale w = 1 and
each half's risk is the configured per-class loss, so the penalty is the squared gradient
of the configured loss in w, never of a softmax cross-entropy. Batches here mix domains:
the risk (DomainBed's nll) is the mean over the domains present in the batch of each
domain's risk, and the penalty the mean over the domains with at least two records in it.
Annealing as DomainBed: weight 1 for the first anneal_fraction of the run's steps, then the
full weight and fresh optimiser moments.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import AlgorithmParams, AnnealedPenalty, domain_risks


class IRMParams(AlgorithmParams):
    kind: Literal["irm"] = "irm"
    # DomainBed's irm_lambda: default 100, searched as 10**U(-1, 5).
    penalty_weight: float = hparam(100.0, ge=0.0, search={"loguniform": [0.1, 1.0e5]})
    # DomainBed's irm_penalty_anneal_iters: 500 of 5,000 steps, searched as int(10**U(0, 4)) steps;
    # here the share of the run (Algorithm.step_at).
    anneal_fraction: float = hparam(0.1, ge=0.0, le=1.0, search={"loguniform": [0.001, 0.5]})
    multilabel: ClassVar[str] = ("one scale multiplies every class's logit; the penalty is the squared gradient "
                                 "in it of the configured per-class loss over each domain's records")
    paper: ClassVar[str] = "Arjovsky et al., Invariant risk minimization, arXiv:1907.02893, 2019"


class IRM(AnnealedPenalty):
    Params = IRMParams
    penalty_over_global_batch = True

    def update(self, batch):
        from heartbeatai.training.algorithms.distributed import gather_rows
        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            logits = self.network(batch["x"], batch.get("demographics"), batch["domain"])
        # Risk and penalty over the global batch (every DDP worker's records), as V-REx's.
        logits, y, domains = gather_rows(logits.float()), gather_rows(batch["y"]), gather_rows(batch["domain"])
        risk = domain_risks(self.loss.per_record(logits, y), domains, self.n_domains).mean()
        penalty = self.penalty(logits, y, domains)
        return self.step_penalised(risk, penalty)

    def penalty(self, logits, y, domains):
        """Mean over the domains with two or more records of grad_w L(half 1) * grad_w L(half 2)."""
        import torch

        scale = torch.ones((), device=logits.device, requires_grad=True)
        terms = []
        for d in range(self.n_domains):
            index = torch.nonzero(domains == d).flatten()
            if len(index) < 2:
                continue
            halves = (index[0::2], index[1::2])
            grads = [torch.autograd.grad(self.loss(logits[h] * scale, y[h]), [scale], create_graph=True)[0]
                     for h in halves]
            terms.append(grads[0] * grads[1])
        return torch.stack(terms).mean() if terms else logits.new_zeros(())

