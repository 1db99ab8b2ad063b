"""RSC: Representation Self-Challenging, on the pooled 1-D features, multi-label.

Huang et al., Self-challenging improves cross-domain generalization, ECCV 2020; DomainBed's
`RSC` is the reference. Each step mutes the features the classifier leans on most, so that
it must also learn from the others:
1. the gradient of the summed true-class logits with respect to the features (Eq. 1): with
   multi-hot targets, the sum over every present class (DomainBed: the one-hot class);
2. per record, the `feature_drop` fraction of features with the largest gradient is muted
   (Eq. 2-3; top-k, so exactly round(feature_drop * F) of them, where DomainBed's percentile
   comparison mutes ties too);
3. only the `batch_drop` fraction of records whose true-class confidence falls most when
   muted keeps the mute (Sec. 3.3): the confidence is the sum over present classes of the
   sigmoid probability (DomainBed: the softmax probability of the one class);
4. the configured loss on the logits of the muted features (Eq. 5).
A record with no present class has no true-class logit to challenge: its gradient is zero,
and it is left unmuted (muting an arbitrary top-k of equal zeros would only add noise).
The classifier is the model's `classify`, a linear map, so step 1 is taken on detached
features, outside DDP's forward: only the final loss's backward reaches the parameters.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams


class RSCParams(AlgorithmParams):
    kind: Literal["rsc"] = "rsc"
    # DomainBed: rsc_f_drop_factor and rsc_b_drop_factor, each 1/3, searched as U(0, 0.5).
    feature_drop: float = hparam(1 / 3, ge=0.0, le=0.5, search={"uniform": [0.0, 0.5]})
    batch_drop: float = hparam(1 / 3, ge=0.0, le=0.5, search={"uniform": [0.0, 0.5]})
    multilabel: ClassVar[str] = ("the challenged gradient is of the sum of every present class's logit, the "
                                 "confidence drop sums their sigmoid probabilities, the loss is the configured one")
    paper: ClassVar[str] = "Huang et al., Self-challenging improves cross-domain generalization, ECCV 2020"


def top_fraction_mask(scores, fraction: float):
    """(B, K) -> (B, K) float mask: 0 at the round(fraction * K) largest scores of each row, 1 elsewhere."""
    import torch

    k = round(fraction * scores.shape[1])
    mask = torch.ones_like(scores)
    if k:
        mask.scatter_(1, scores.topk(k, dim=1).indices, 0.0)
    return mask


class RSC(Algorithm):
    Params = RSCParams

    def update(self, batch):
        from heartbeatai.training.precision import autocast

        demographics = batch.get("demographics")
        with autocast(self.device):
            features, logits = self.network(batch["x"], demographics, batch["domain"], with_features=True)
        features, logits = features.float(), logits.float()
        present = (batch["y"] > 0.5).to(features.dtype)
        mask = self.challenge_mask(features.detach(), logits.detach(), present, demographics)
        challenged = self.model.classify(features * mask, demographics)
        loss = self.loss(challenged, batch["y"])
        self.step(loss)
        return {"loss": loss.detach(), "muted": (1.0 - mask).mean().detach()}

    def challenge_mask(self, features, logits, present, demographics):
        """(B, F) 0 where a feature is muted, from detached features and logits."""
        import torch

        with torch.enable_grad():
            probe = features.clone().requires_grad_(True)
            gradient, = torch.autograd.grad((self.model.classify(probe, demographics).float() * present).sum(), probe)
        feature_mask = top_fraction_mask(gradient, self.params.feature_drop)
        feature_mask[present.sum(dim=1) == 0] = 1.0
        with torch.no_grad():
            muted = self.model.classify(features * feature_mask, demographics).float()
            drop = ((torch.sigmoid(logits) - torch.sigmoid(muted)) * present).sum(dim=1)
            unmuted = top_fraction_mask(drop.unsqueeze(0), self.params.batch_drop).squeeze(0)  # 0: the largest drops
        return torch.maximum(feature_mask, unmuted.unsqueeze(1))
