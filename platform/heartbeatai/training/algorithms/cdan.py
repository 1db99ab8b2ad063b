"""CDAN, multi-label: DANN whose discriminator sees the features conditioned on the predictions.

Long et al., Conditional adversarial domain adaptation, NeurIPS 2018. The discriminator's
input is the multilinear map f (x) g, the outer product of the features and the classifier's
predictions, so that it aligns the joint distribution of features and labels rather than
the features alone. Long et al.'s g is a softmax over mutually exclusive classes; an ECG has
several labels at once, so g here is the vector of per-class sigmoid probabilities, each the
model's belief in one binary label: f (x) sigmoid(logits) has one block of features per class,
weighted by that class's probability, and a record with two labels conditions on both
(a softmax would split one unit of mass between them and hide co-occurrence). As in the
authors' code the predictions are detached: the conditioning steers the discriminator, and
the reversed gradient reaches the features only. Above 4096 dimensions the paper's
randomized multilinear map (R_f f) * (R_g g) / sqrt(1024) replaces the outer product, with
fixed Gaussian R drawn from a constant seed: the same on every rank and after a resume.

Everything else (the reversal layer and its schedule, the discriminator, its weight decay,
DDP, the checkpoint) is DANN's (dann.py), and so are the parameters.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.training.algorithms.base import feature_width
from heartbeatai.training.algorithms.dann import DANN, DANNParams

# Long et al.: the full outer product up to 4096 dimensions, the randomized map of 1024 above.
MAX_OUTER_DIM = 4096
RANDOM_DIM = 1024


class CDANParams(DANNParams):
    kind: Literal["cdan"] = "cdan"
    multilabel: ClassVar[str] = ("the discriminator is conditioned on f (x) sigmoid(logits), per-class "
                                 "probabilities rather than a softmax; its softmax cross-entropy is over the "
                                 "training-domain id, one per record; the class objective is the configured loss "
                                 "summed over classes, a record's negative log-likelihood like the discriminator's")
    paper: ClassVar[str] = "Long et al., Conditional adversarial domain adaptation, NeurIPS 2018"


class CDAN(DANN):
    Params = CDANParams

    def discriminator_inputs(self, parts) -> int:
        import torch

        width, n_classes = feature_width(parts.model), parts.model.classifier.out_features
        self.random_maps = None
        if width * n_classes <= MAX_OUTER_DIM:
            return width * n_classes
        generator = torch.Generator().manual_seed(0)
        self.random_maps = tuple(torch.randn(n, RANDOM_DIM, generator=generator).to(parts.device)
                                 for n in (width, n_classes))
        return RANDOM_DIM

    def discriminator_input(self, features, logits):
        return conditioning(features, logits.sigmoid().detach(), self.random_maps)


def conditioning(features, probabilities, random_maps=None):
    """(B, F) features, (B, C) per-class probabilities -> (B, F * C) flattened outer product
    [b, f * C + c] = features[b, f] * probabilities[b, c], or the randomized map of it."""
    if random_maps is None:
        return (features.unsqueeze(2) * probabilities.unsqueeze(1)).flatten(1)
    r_features, r_probabilities = random_maps
    return (features @ r_features) * (probabilities @ r_probabilities) / RANDOM_DIM ** 0.5
