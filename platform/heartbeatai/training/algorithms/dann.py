"""DANN: the configured loss, and a domain discriminator the features are trained to fool.

Ganin et al., Domain-adversarial training of neural networks, JMLR 2016. A gradient-reversal
layer between the pooled features and the discriminator MLP: forward is the identity,
backward multiplies the gradient by -lambda_p, so one backward pass trains the discriminator
to tell the training domains apart and the feature extractor to make them indistinguishable.
lambda_p = lambda (2 / (1 + exp(-10 p)) - 1) with p the fraction of training done (Ganin's
schedule; DomainBed's `lambda` is its maximum). DomainBed alternates discriminator and
generator steps instead (`d_steps_per_g_step`, Adam with beta1 0.5); with the reversal layer
neither is needed, and the optimiser stays the trial's.

Multi-label: the class objective is the configured per-class loss summed over the classes
(Algorithm.record_risk: a record's negative log-likelihood); only the discriminator uses a
softmax cross-entropy, over the training-domain id, which is one label per record, so both
terms are a record's negative log-likelihood and the adversary weight means what it means in
DomainBed.

The discriminator is an extra module: trained by the same optimiser (`trainable()`), with
DomainBed's own weight decay (`weight_decay_d`), saved in the checkpoint, and under DDP
wrapped in its own DistributedDataParallel (base.synchronised) so its gradients are averaged
over the workers like the network's: otherwise each rank's discriminator would drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams, feature_width, synchronised


class DANNParams(AlgorithmParams):
    kind: Literal["dann"] = "dann"
    # DomainBed: default 1, searched as 10**U(-2, 2).
    adversary_weight: float = hparam(1.0, ge=0.0, search={"loguniform": [0.01, 100.0]})
    # DomainBed's MLP: width 256, int(2**U(6, 10)); depth 3, choice [3, 4, 5]; dropout 0, choice [0, 0.1, 0.5].
    mlp_width: int = hparam(256, ge=1, search={"lograndint": [64, 1024]})
    mlp_depth: int = hparam(3, ge=2, search={"choice": [3, 4, 5]})
    mlp_dropout: float = hparam(0.0, ge=0.0, lt=1.0, search={"choice": [0.0, 0.1, 0.5]})
    # DomainBed: 0, searched as 10**U(-6, -2) (an L2 term in its Adam; here AdamW's decoupled decay).
    weight_decay_d: float = hparam(0.0, ge=0.0, search={"loguniform": [1.0e-6, 1.0e-2]})
    multilabel: ClassVar[str] = ("the class objective is the configured per-class loss summed over classes (a record's "
                                 "negative log-likelihood); the discriminator's "
                                 "softmax cross-entropy is over the training-domain id, one per record")
    paper: ClassVar[str] = "Ganin et al., Domain-adversarial training of neural networks, JMLR 2016"


def reverse_gradient(x, weight: float):
    """The identity forward; the gradient times -weight backward (Ganin et al.'s GRL)."""
    return _gradient_reversal().apply(x, weight)


@functools.cache
def _gradient_reversal():
    import torch  # here, not at the top: the trial configuration imports this module

    class GradientReversal(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight):
            ctx.weight = weight
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return -ctx.weight * grad, None

    return GradientReversal


def discriminator_mlp(in_features: int, n_domains: int, width: int, depth: int, dropout: float):
    """DomainBed's `networks.MLP`: Linear-Dropout-ReLU, depth - 2 hidden layers, then the domain logits."""
    from torch import nn

    layers = [nn.Linear(in_features, width), nn.Dropout(dropout), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.Dropout(dropout), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, n_domains))


def ganin_schedule(progress: float) -> float:
    """2 / (1 + exp(-10 p)) - 1: 0 at the start, about 1 from a third of training on."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class DANN(Algorithm):
    Params = DANNParams

    def __init__(self, params, parts) -> None:
        from torch import nn

        self.discriminator = discriminator_mlp(self.discriminator_inputs(parts), parts.n_domains, params.mlp_width,
                                               params.mlp_depth, params.mlp_dropout).to(parts.device)
        self._trainable = nn.ModuleDict({"network": parts.model, "discriminator": self.discriminator})
        parts = dataclasses.replace(parts, make_optimizer=self._own_decay(parts.make_optimizer))
        super().__init__(params, parts)
        self.discriminate = synchronised(self.discriminator, parts.device)
        self.steps = 0

    def discriminator_inputs(self, parts) -> int:
        return feature_width(parts.model)

    def _own_decay(self, make_optimizer):
        """The trial's optimiser, the discriminator's parameters moved to a group of their own
        with `weight_decay_d`, before the schedule sees the groups."""
        def make(trainable):
            optimizer = make_optimizer(trainable)
            own = {id(p) for p in self.discriminator.parameters()}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in own]
            optimizer.add_param_group({"params": list(self.discriminator.parameters()),
                                       "weight_decay": self.params.weight_decay_d})
            return optimizer
        return make

    def trainable(self):
        return self._trainable

    def reversal_weight(self) -> float:
        return self.params.adversary_weight * ganin_schedule(self.steps / max(self.total_steps, 1))

    def discriminator_input(self, features, logits):
        return features

    def update(self, batch):
        import torch.nn.functional as F

        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            features, logits = self.network(batch["x"], batch.get("demographics"), batch["domain"], with_features=True)
        risk = self.record_risk(logits.float(), batch["y"])  # a record's NLL, as the domain loss is
        weight = self.reversal_weight()
        reversed_input = reverse_gradient(self.discriminator_input(features.float(), logits.float()), weight)
        domain_logits = self.discriminate(reversed_input)
        domain_loss = F.cross_entropy(domain_logits, batch["domain"])  # softmax-ok: domain ids are single-label
        # One backward trains both sides: the reversal turns the domain loss's gradient into the
        # features into -lambda_p times itself, while the discriminator descends it as is.
        self.step(risk + domain_loss)
        self.steps += 1
        # Reported as Ganin et al.'s saddle-point objective E = risk - lambda_p domain loss (DomainBed's
        # gen_loss), which the network minimises and the discriminator maximises.
        objective = risk - weight * domain_loss
        return {"loss": objective.detach(), "risk": risk.detach(), "domain_loss": domain_loss.detach(),
                "reversal_weight": domain_loss.new_tensor(weight).detach()}

    def extra_state(self):
        return {"steps": self.steps, "discriminator": self.discriminator.state_dict()}

    def load_extra_state(self, state):
        self.steps = int(state["steps"])
        self.discriminator.load_state_dict(state["discriminator"])
