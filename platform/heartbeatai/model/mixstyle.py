"""MixStyle (Zhou et al., ICLR 2021) for 1-D signals.

Feature statistics (per-channel mean and standard deviation) carry a recording's
"style": amplitude scale, baseline, device and filter character. Mixing them between
samples during training synthesises new styles, which helps on unseen domains. Here
statistics are taken over time only, so each (sample, channel) keeps its own style.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

MixMode = Literal["random", "crossdomain"]


class MixStyle1d(nn.Module):
    """Mixes (B, C, T) feature statistics with a random partner; identity in eval.

    `random` pairs each sample with a random one of the batch; `crossdomain` pairs it
    with a sample of another domain (the sampler must put two or more domains in a
    batch; samples without such a partner are left unchanged). Randomness comes from
    torch's generator, so a seeded run repeats.
    """

    def __init__(self, p: float, alpha: float, mix: MixMode, eps: float = 1e-6) -> None:
        # p, alpha and mix are checked once, by the trial configuration (MixStyleConfig).
        super().__init__()
        self.p = p
        self.alpha = alpha
        self.mix = mix
        self.eps = eps

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, mix={self.mix}"

    def forward(self, x: torch.Tensor, domains: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or self.p == 0.0 or torch.rand(()) >= self.p:
            return x
        batch = x.size(0)
        if self.mix == "crossdomain":
            if domains is None:
                raise ValueError("crossdomain MixStyle needs the batch's domain ids")
            partner = _cross_domain_partners(domains.to(x.device))
        else:
            partner = torch.randperm(batch, device=x.device)

        # Statistics are detached, as in the paper: gradients flow through the
        # normalised content, not through the style being swapped in.
        mu = x.mean(dim=2, keepdim=True).detach()
        sigma = (x.var(dim=2, keepdim=True) + self.eps).sqrt().detach()
        normalised = (x - mu) / sigma
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((batch, 1, 1)).to(x)
        mu_mix = lam * mu + (1 - lam) * mu[partner]
        sigma_mix = lam * sigma + (1 - lam) * sigma[partner]
        return normalised * sigma_mix + mu_mix


def _cross_domain_partners(domains: torch.Tensor) -> torch.Tensor:
    """For each sample a uniformly drawn partner of another domain (itself if none)."""
    scores = torch.rand(domains.numel(), domains.numel(), device=domains.device)
    same = domains.unsqueeze(0) == domains.unsqueeze(1)
    scores = scores.masked_fill(same, -1.0)
    best = scores.argmax(dim=1)
    has_partner = (~same).any(dim=1)
    return torch.where(has_partner, best, torch.arange(domains.numel(), device=domains.device))
