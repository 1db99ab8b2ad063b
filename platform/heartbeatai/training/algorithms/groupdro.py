"""GroupDRO: the training domains' risks weighted by exponentiated-gradient weights q that
climb toward the worst domain.

Sagawa et al., Distributionally robust neural networks for group shifts, ICLR 2020
(Algorithm 1, the groups being the training domains); DomainBed's `GroupDRO` is the
reference implementation: each step q_d *= exp(eta * risk_d), q /= sum(q), then the
objective is q . risks with the updated q. Multi-label: a domain's risk is the configured
per-class loss averaged over that domain's records in the batch. In q's exponent a record's
loss is summed over its classes, C times the mean the objective uses: DomainBed's eta (and
its search range) multiplies a softmax cross-entropy, one record's negative log-likelihood,
and under independent sigmoids that is the sum over classes. With the mean, q hardly moved
in a run of a hundred steps at any eta of DomainBed's range (risk gaps of about 0.05, so
eta * steps * gap < 0.5). Batches here mix domains,
so a domain absent from the batch keeps its q, and the objective weights the present
domains by their q renormalised among them (with every domain present: q . risks).

q is state: it goes into the checkpoint, and under DDP it is updated from each domain's
risk over the whole global batch (sums and counts all-reduced), so every worker holds the
same q; the objective itself uses the worker's own records, as DDP averages gradients.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams


class GroupDROParams(AlgorithmParams):
    kind: Literal["groupdro"] = "groupdro"
    # DomainBed's groupdro_eta: default 1e-2, searched as 10**U(-3, -1), on a record's loss summed
    # over its classes (the module docstring).
    eta: float = hparam(0.01, ge=0.0, search={"loguniform": [1.0e-3, 0.1]})
    multilabel: ClassVar[str] = ("a domain's risk is the configured per-class loss over its records; q reweights "
                                 "those risks and never touches the labels")
    paper: ClassVar[str] = "Sagawa et al., Distributionally robust neural networks for group shifts, ICLR 2020"


class GroupDRO(Algorithm):
    Params = GroupDROParams

    def __init__(self, params, parts) -> None:
        import torch

        super().__init__(params, parts)
        self.q = torch.full((self.n_domains,), 1.0 / self.n_domains, device=self.device)

    def update(self, batch):
        import torch

        from heartbeatai.training.algorithms.distributed import all_reduce_sum
        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            logits = self.network(batch["x"], batch.get("demographics"), batch["domain"])
        per_record = self.loss.per_record(logits.float(), batch["y"])
        domains = batch["domain"]
        sums = per_record.new_zeros(self.n_domains).index_add(0, domains, per_record)
        counts = torch.bincount(domains, minlength=self.n_domains).to(per_record.dtype)
        # q's update: every worker's records, so q stays the same on every rank.
        global_sums = all_reduce_sum(torch.stack([sums.detach(), counts]))
        seen = global_sums[1] > 0
        global_risks = global_sums[0] / global_sums[1].clamp(min=1.0)
        n_classes = per_record.new_tensor(float(batch["y"].shape[1]))
        with torch.no_grad():
            self.q = torch.where(seen, self.q * torch.exp(self.params.eta * n_classes * global_risks), self.q)
            self.q = self.q / self.q.sum()
        present = counts > 0
        risks = sums[present] / counts[present]
        weights = self.q[present] / self.q[present].sum()
        objective = (weights * risks).sum()
        self.step(objective)
        return {"loss": objective.detach(), "worst_risk": risks.detach().max()}

    def extra_state(self):
        return {"q": self.q.detach().cpu().clone()}

    def load_extra_state(self, state):
        self.q = state["q"].to(self.device, self.q.dtype)
