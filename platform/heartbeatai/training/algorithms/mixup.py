"""Inter-domain Mixup: train on convex combinations of records from different training domains.

Xu et al., Adversarial domain adaptation with domain mixup, AAAI 2020, and Yan et al.,
Improve unsupervised domain adaptation with mixup training, arXiv:2001.00677, 2020;
DomainBed's `Mixup` is the reference implementation: lam ~ Beta(alpha, alpha), x = lam x_i +
(1 - lam) x_j with i and j from different domains, objective lam L(f(x), y_i) + (1 - lam)
L(f(x), y_j). Batches here mix domains (DomainBed pairs whole per-domain minibatches), so
each record i is paired with a record j drawn uniformly from the batch's records of other
domains (from the whole batch when the batch holds one domain, which is what DomainBed's
pairing does with one minibatch); one lam per step, as DomainBed draws one per pair of
minibatches. Demographics, inputs like the signal, are mixed with the same lam; MixStyle,
if on, sees record i's domain.

Multi-label: the targets are mixed, lam y_i + (1 - lam) y_j, and the configured loss is
taken on those soft targets. For BCE (label smoothing and pos_weight included) the loss is
affine in the target, so this equals DomainBed's lam L(y_i) + (1 - lam) L(y_j) exactly.
Focal and ASL weight their terms assuming y in {0, 1} (`hard_targets_only`), so the trial
configuration refuses mixup with them (config.py).

The draws (lam, the partners) come from the process's torch CPU generator, which the loop
seeds per worker and restores from the checkpoint, so a resumed run repeats exactly.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams


class MixupParams(AlgorithmParams):
    kind: Literal["mixup"] = "mixup"
    # DomainBed's mixup_alpha: default 0.2, searched as 10**U(-1, 1).
    alpha: float = hparam(0.2, gt=0.0, search={"loguniform": [0.1, 10.0]})
    multilabel: ClassVar[str] = ("targets are mixed like the inputs and the configured per-class loss is taken on "
                                 "them: exact for BCE, which is affine in the target; focal and ASL are refused")
    paper: ClassVar[str] = ("Xu et al., Adversarial domain adaptation with domain mixup, AAAI 2020; Yan et al., "
                            "Improve unsupervised domain adaptation with mixup training, arXiv:2001.00677, 2020")
    # Read by TrialConfig: a loss with hard_targets_only has no meaning on these targets.
    mixes_targets: ClassVar[bool] = True


def cross_domain_partners(domains):
    """For each record, the index of a record of another domain, uniformly among them
    (among all records when the batch holds one domain)."""
    import torch

    domains = domains.cpu()
    other = (domains[:, None] != domains[None, :]).float()
    alone = other.sum(1) == 0
    other[alone] = 1.0
    return torch.multinomial(other, 1).flatten()


class Mixup(Algorithm):
    Params = MixupParams

    def update(self, batch):
        import torch

        from heartbeatai.training.precision import autocast

        alpha = torch.tensor(self.params.alpha)
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        j = cross_domain_partners(batch["domain"]).to(batch["x"].device)
        x = lam * batch["x"] + (1 - lam) * batch["x"][j]
        y = lam * batch["y"] + (1 - lam) * batch["y"][j]
        demographics = batch.get("demographics")
        if demographics is not None:
            demographics = lam * demographics + (1 - lam) * demographics[j]
        with autocast(self.device):
            logits = self.network(x, demographics, batch["domain"])
        loss = self.loss(logits.float(), y)
        self.step(loss)
        return {"loss": loss.detach()}
