"""DANN and CDAN: the reversed gradient has the published sign and weight, the discriminator
learns un-reversed, its input is the multi-label conditioning, and it is trained and saved."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heartbeatai.training.algorithms.cdan import conditioning
from heartbeatai.training.algorithms.dann import reverse_gradient
from heartbeatai.training.factory import algorithm_from_config, loss_from_config
from test_algorithms import N_CLASSES, N_DOMAINS, toy_batches, trial_of


class LinearFeatures(nn.Module):
    """Features a linear map of lead means, logits a linear map of them: SEResNet1d's interface."""

    demographics = 0

    def __init__(self, width: int = 5):
        super().__init__()
        torch.manual_seed(1)
        self.feature = nn.Linear(12, width)
        self.classifier = nn.Linear(width, N_CLASSES)

    def classify(self, features, demographics=None):
        return self.classifier(features)

    def forward(self, x, demographics=None, domains=None, *, with_features=False):
        features = self.feature(x.mean(dim=2))
        logits = self.classify(features)
        return (features, logits) if with_features else logits


def on_linear_features(kind: str, width: int = 5, **overrides):
    trial = trial_of(kind, **{"loss.kind": "bce", **overrides})
    net = LinearFeatures(width)
    loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32))
    return algorithm_from_config(trial, net, net, loss, steps_per_epoch=10, n_domains=N_DOMAINS,
                                 device=torch.device("cpu")), net


def adversarial(kind: str, width: int = 5, **overrides):
    return on_linear_features(kind, width, **{"algorithm.mlp_width": 8, **overrides})


def test_gradient_reversal_is_the_identity_forward_and_minus_lambda_times_the_gradient_backward():
    torch.manual_seed(0)
    x = torch.randn(4, 6, requires_grad=True)
    head = nn.Linear(6, 2)
    target = torch.tensor([0, 1, 1, 0])
    plain, = torch.autograd.grad(F.cross_entropy(head(x), target), x)  # softmax-ok: domain ids are single-label
    reversed_x = reverse_gradient(x, 0.7)
    assert torch.equal(reversed_x, x)
    domain_loss = F.cross_entropy(head(reversed_x), target)  # softmax-ok: domain ids are single-label
    flipped, = torch.autograd.grad(domain_loss, x)
    torch.testing.assert_close(flipped, -0.7 * plain)


def _independent_gradients(net, discriminator, batch, condition):
    """d risk / d feature weights, d domain loss / d feature weights and / d discriminator, no reversal."""
    features, logits = net(batch["x"], with_features=True)
    risk = F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="sum") / len(logits)  # a record's NLL
    domain_logits = discriminator(condition(features, logits))
    domain_loss = F.cross_entropy(domain_logits, batch["domain"])  # softmax-ok: domain ids are single-label
    g_risk, = torch.autograd.grad(risk, net.feature.weight, retain_graph=True)
    g_domain = torch.autograd.grad(domain_loss, [net.feature.weight, *discriminator.parameters()])
    return risk, domain_loss, g_risk, g_domain[0], g_domain[1:]


def _check_reversed_step(kind, condition):
    algorithm, net = adversarial(kind, **{"algorithm.adversary_weight": 3.0})
    batches = toy_batches(2, seed=7)
    algorithm.update(batches[0])  # progress 0: lambda_p is 0
    risk, domain_loss, g_risk, g_domain, g_discriminator = _independent_gradients(
        copy.deepcopy(net), copy.deepcopy(algorithm.discriminator), batches[1], condition)
    scalars = algorithm.update(batches[1])
    lam = 3.0 * (2 / (1 + math.exp(-10 * 1 / 10)) - 1)  # Ganin et al.'s schedule at p = 1/10
    torch.testing.assert_close(scalars["reversal_weight"], torch.tensor(lam))
    torch.testing.assert_close(scalars["loss"], (risk - lam * domain_loss).detach())  # Ganin et al.'s E
    # The features learn to fool the discriminator: the domain loss's gradient reversed and scaled...
    torch.testing.assert_close(net.feature.weight.grad, g_risk - lam * g_domain)
    # ...while the discriminator learns to tell the domains apart: its gradient is not reversed.
    for param, expected in zip(algorithm.discriminator.parameters(), g_discriminator):
        torch.testing.assert_close(param.grad, expected)


def test_dann_reverses_the_domain_gradient_into_the_features_only():
    _check_reversed_step("dann", lambda features, logits: features)


def test_cdan_reverses_the_gradient_of_a_discriminator_conditioned_on_sigmoid_probabilities():
    def outer(features, logits):
        return torch.einsum("bf,bc->bfc", features, torch.sigmoid(logits).detach()).reshape(len(features), -1)

    _check_reversed_step("cdan", outer)


def test_cdan_conditioning_is_the_outer_product_of_features_and_per_class_probabilities():
    torch.manual_seed(3)
    features, logits = torch.randn(4, 5), torch.randn(4, 3)
    probabilities = torch.sigmoid(logits)
    expected = torch.einsum("bf,bc->bfc", features, probabilities).reshape(4, 15)
    torch.testing.assert_close(conditioning(features, probabilities), expected)
    assert not torch.allclose(probabilities.sum(dim=1), torch.ones(4))  # not a softmax: labels co-occur


def test_cdan_uses_the_randomized_multilinear_map_above_4096_dimensions():
    cdan, _ = adversarial("cdan", width=4096 // N_CLASSES + 1)
    assert cdan.random_maps is not None and cdan.discriminator[0].in_features == 1024
    r_f, r_g = cdan.random_maps
    features, probabilities = torch.randn(2, r_f.shape[0]), torch.rand(2, r_g.shape[0])
    torch.testing.assert_close(conditioning(features, probabilities, cdan.random_maps),
                               (features @ r_f) * (probabilities @ r_g) / 32.0)


def test_the_discriminator_is_optimised_with_its_own_weight_decay_and_saved():
    algorithm, net = adversarial("dann", **{"algorithm.weight_decay_d": 1e-3, "algorithm.mlp_depth": 4})
    groups = algorithm.optimizer.param_groups
    own = {id(p) for p in algorithm.discriminator.parameters()}
    assert [{id(p) for p in g["params"]} == own for g in groups] == [False, False, True]
    assert groups[-1]["weight_decay"] == 1e-3
    assert {id(p) for g in groups for p in g["params"]} == own | {id(p) for p in net.parameters()}
    assert len([m for m in algorithm.discriminator if isinstance(m, nn.Linear)]) == 4
    saved = algorithm.checkpoint_state()["algorithm"]["discriminator"]
    assert saved.keys() == algorithm.discriminator.state_dict().keys()
