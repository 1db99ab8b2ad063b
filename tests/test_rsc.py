"""RSC (Huang et al. 2020), multi-label: the mask mutes exactly the features the true classes'
gradient ranks highest, in the records whose confidence falls most; repeated in numpy."""

from __future__ import annotations

import numpy as np
import torch

from heartbeatai.training.algorithms.rsc import top_fraction_mask
from test_algorithms import toy_batches
from test_domain_adversarial import on_linear_features


def test_the_mask_mutes_exactly_the_top_fraction_of_each_row():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, -1.0, 0.2, 0.0, 0.5],
                           [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0]])
    mask = top_fraction_mask(scores, 0.25)  # 2 of 8
    assert mask.tolist() == [[1, 0, 1, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]]
    assert top_fraction_mask(scores, 0.0).eq(1).all()


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_rsc_trains_on_the_challenged_features_computed_independently():
    batch = toy_batches(1, seed=9)[0]
    batch["y"][0] = 0.0  # a record with no present class: never muted
    rsc, net = on_linear_features("rsc", width=6, **{"algorithm.feature_drop": 0.5, "algorithm.batch_drop": 0.5})
    w1, b1 = net.feature.weight.detach().double().numpy(), net.feature.bias.detach().double().numpy()
    w2, b2 = net.classifier.weight.detach().double().numpy(), net.classifier.bias.detach().double().numpy()
    x, y = batch["x"].double().numpy().mean(axis=2), batch["y"].double().numpy()

    f = x @ w1.T + b1
    logits = f @ w2.T + b2
    gradient = y @ w2  # d sum(y * logits) / d f: the present classes' rows of the classifier
    feature_mask = np.ones_like(f)
    for i in range(len(f)):
        if y[i].any():
            feature_mask[i, np.argsort(-gradient[i])[:3]] = 0.0  # 3 of 6 features
    drop = ((_sigmoid(logits) - _sigmoid((f * feature_mask) @ w2.T + b2)) * y).sum(axis=1)
    challenged_records = np.argsort(-drop)[:8]  # 8 of 16 records
    mask = np.ones_like(f)
    mask[challenged_records] = feature_mask[challenged_records]
    z = (f * mask) @ w2.T + b2
    expected = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))  # BCE with logits

    assert mask[0].all() and not mask.all()
    scalars = rsc.update(batch)
    np.testing.assert_allclose(float(scalars["loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(scalars["muted"]), 1 - mask.mean(), rtol=1e-6)
