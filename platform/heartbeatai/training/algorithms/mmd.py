"""MMD: the configured loss plus the maximum mean discrepancy between the training domains' features.

Li et al., Domain generalization with adversarial feature learning, CVPR 2018 (MMD-AAE);
DomainBed's `MMD` is the reference implementation, without the adversarial autoencoder:
a biased MMD estimate under a mixture of Gaussian kernels exp(-g |a - b|^2), g in 1e-3 ..
1e3, between each pair of training domains present in the batch (coral.py's
`FeatureAlignment`, which says how mixed-domain batches are paired). An MMD needs no
covariance, so a domain with one record in the batch takes part.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import AlgorithmParams
from heartbeatai.training.algorithms.coral import FeatureAlignment

KERNEL_GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # DomainBed's


class MMDParams(AlgorithmParams):
    kind: Literal["mmd"] = "mmd"
    # DomainBed's mmd_gamma: default 1, searched as 10**U(-1, 1).
    penalty_weight: float = hparam(1.0, ge=0.0, search={"loguniform": [0.1, 10.0]})
    multilabel: ClassVar[str] = ("the configured per-class loss on the batch, summed over classes (a record's negative "
                                 "log-likelihood, DomainBed's unit); the penalty acts on the features only, never on "
                                 "the labels")
    paper: ClassVar[str] = "Li et al., Domain generalization with adversarial feature learning, CVPR 2018"


def gaussian_kernel(x, y):
    """sum over KERNEL_GAMMAS of exp(-g |x_i - y_j|^2), (len(x), len(y)); squared distances
    as DomainBed computes them (one matrix product, floored at 1e-30)."""
    import torch

    squared = torch.addmm(y.pow(2).sum(-1, keepdim=True).t(), x, y.t(), alpha=-2).add(
        x.pow(2).sum(-1, keepdim=True)).clamp_min(1e-30)
    return sum(torch.exp(-g * squared) for g in KERNEL_GAMMAS)


def mmd_distance(x, y):
    return gaussian_kernel(x, x).mean() + gaussian_kernel(y, y).mean() - 2 * gaussian_kernel(x, y).mean()


class MMD(FeatureAlignment):
    Params = MMDParams
    min_records = 1

    def distance(self, x, y):
        return mmd_distance(x, y)
