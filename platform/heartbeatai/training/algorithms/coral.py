"""Deep CORAL: the configured loss plus the distance between the training domains' feature
means and covariances.

Sun and Saenko, Deep CORAL: correlation alignment for deep domain adaptation, ECCV
Workshops 2016; DomainBed's `CORAL` (its `AbstractMMD` with the mean-covariance kernel) is
the reference implementation, and `FeatureAlignment` here is that abstract class: MMD
(mmd.py) differs only in the distance. Batches here mix domains (DomainBed draws one
minibatch per domain), so the penalty is the mean over the pairs of training domains
present in the batch, each domain's records taken from it; a domain needs two records for
a covariance, so a domain with one record in the batch sits the step out, and with fewer
than two such domains the penalty is zero. The loss term is the configured loss over the
whole batch (DomainBed averages per-domain minibatch losses: the same when domains have
equal shares of the batch), summed over the classes (Algorithm.record_risk: a record's
negative log-likelihood, the unit DomainBed's penalty weight was set against). The features
are the model's pooled representation
(`features()`: the last stage and the concentration head's taps), the demographics
excluded: they describe the patient, not the signal. Under DDP the penalty is over the
global batch (distributed.gather_rows): every worker's features, so the worker count does not
change what is aligned.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams


class CORALParams(AlgorithmParams):
    kind: Literal["coral"] = "coral"
    # DomainBed's mmd_gamma: default 1, searched as 10**U(-1, 1).
    penalty_weight: float = hparam(1.0, ge=0.0, search={"loguniform": [0.1, 10.0]})
    multilabel: ClassVar[str] = ("the configured per-class loss on the batch, summed over classes (a record's negative "
                                 "log-likelihood, DomainBed's unit); the penalty acts on the features only, never on "
                                 "the labels")
    paper: ClassVar[str] = "Sun and Saenko, Deep CORAL: correlation alignment for deep domain adaptation, ECCV-W 2016"


def coral_distance(x, y):
    """DomainBed's mean-covariance distance: mean squared difference of the means plus that
    of the (unbiased) covariances."""
    mean_x, mean_y = x.mean(0, keepdim=True), y.mean(0, keepdim=True)
    cent_x, cent_y = x - mean_x, y - mean_y
    cova_x = cent_x.t() @ cent_x / (len(x) - 1)
    cova_y = cent_y.t() @ cent_y / (len(y) - 1)
    return (mean_x - mean_y).pow(2).mean() + (cova_x - cova_y).pow(2).mean()


class FeatureAlignment(Algorithm):
    """The configured loss + penalty_weight x the mean distance over pairs of training domains."""

    min_records: ClassVar[int] = 2  # per domain, for its features to enter the penalty
    penalty_over_global_batch = True

    def distance(self, x, y):
        raise NotImplementedError

    def update(self, batch):
        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            features, logits = self.network(batch["x"], batch.get("demographics"), batch["domain"],
                                            with_features=True)
        from heartbeatai.training.algorithms.distributed import gather_rows

        risk = self.record_risk(logits.float(), batch["y"])  # in DomainBed's unit: its weights apply
        penalty = self.alignment_penalty(gather_rows(features.float()), gather_rows(batch["domain"]))
        objective = risk + self.params.penalty_weight * penalty
        self.step(objective)
        return {"loss": objective.detach(), "risk": risk.detach(), "penalty": penalty.detach()}

    def alignment_penalty(self, features, domains):
        import torch

        counts = torch.bincount(domains, minlength=self.n_domains).tolist()
        groups = [features[domains == d] for d in range(self.n_domains) if counts[d] >= self.min_records]
        pairs = [self.distance(groups[i], groups[j]) for i in range(len(groups)) for j in range(i + 1, len(groups))]
        return torch.stack(pairs).mean() if pairs else features.new_zeros(())


class CORAL(FeatureAlignment):
    Params = CORALParams

    def distance(self, x, y):
        return coral_distance(x, y)
