"""Each domain-generalisation algorithm's penalty or objective on small fixed tensors against an
independent computation of its published formula (DomainBed's code, written here with numpy or
plain torch), never by calling the module's own helpers. Learning and exact resume are
tested for every registered algorithm in test_algorithms.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from heartbeatai.config import ConfigError, TrialConfig
from heartbeatai.losses import LOSSES
from heartbeatai.training.factory import algorithm_from_config, loss_from_config

N_CLASSES, N_DOMAINS, LENGTH = 3, 3, 16
TINY = {"model.stem_width": 8, "model.widths": [8, 16], "model.depths": [1, 1], "optim.lr": 0.01,
        "optim.epochs": 1, "label_smoothing": 0.0, "loss.kind": "bce"}


class TinyFeatureNet(nn.Module):
    """Features an independent computation can repeat: tanh of a linear map of the lead means;
    then one linear classifier, as SEResNet1d's head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Linear(12, 4)
        self.classifier = nn.Linear(4, N_CLASSES)

    def features(self, x):
        return torch.tanh(self.embed(x.mean(dim=2)))

    def forward(self, x, demographics=None, domains=None, *, with_features=False):
        features = self.features(x)
        logits = self.classifier(features)
        return (features, logits) if with_features else logits


def stub(kind: str, net: nn.Module | None = None, **overrides):
    trial = TrialConfig().with_overrides({**TINY, "algorithm.kind": kind, **overrides})
    net = net or TinyFeatureNet()
    loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32))
    algorithm = algorithm_from_config(trial, net, net, loss, steps_per_epoch=10, n_domains=N_DOMAINS,
                                      device=torch.device("cpu"))
    return algorithm, net


def batch_of(domains: list[int], seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    n = len(domains)
    x = rng.normal(0, 1, (n, 12, LENGTH)) + np.asarray(domains)[:, None, None]
    y = (rng.random((n, N_CLASSES)) < 0.5).astype(np.float32)
    return {"x": torch.tensor(x, dtype=torch.float32), "y": torch.from_numpy(y), "domain": torch.tensor(domains)}


# Domain 2 has a single record: too few for a covariance or a variance.
DOMAINS = [0, 1, 0, 1, 0, 0, 1, 1, 2, 0, 1, 0]


def bce(logits, y):
    return F.binary_cross_entropy_with_logits(logits, y)


def record_nll(logits, y):
    """A record's negative log-likelihood of its label vector, averaged over the records: BCE
    summed over the classes, the unit of DomainBed's softmax cross-entropy (and of its weights)."""
    return F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / len(logits)


# ---------------------------------------------------------------- CORAL and MMD


def test_coral_penalty_is_the_mean_over_domain_pairs_of_mean_and_covariance_differences():
    """DomainBed's CORAL: ((mean_i - mean_j)**2).mean() + ((cov_i - cov_j)**2).mean(), unbiased
    covariances, averaged over pairs of domains; numpy's covariance here."""
    batch = batch_of(DOMAINS, seed=0)
    coral, net = stub("coral", **{"algorithm.penalty_weight": 3.0})
    with torch.no_grad():
        features, logits = net(batch["x"], with_features=True)
    f, d = features.double().numpy(), np.asarray(DOMAINS)
    groups = [f[d == 0], f[d == 1]]  # domain 2 (one record) has no covariance
    expected = (np.mean((groups[0].mean(0) - groups[1].mean(0)) ** 2)
                + np.mean((np.cov(groups[0], rowvar=False) - np.cov(groups[1], rowvar=False)) ** 2))
    scalars = coral.update(batch)
    np.testing.assert_allclose(float(scalars["penalty"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(scalars["loss"]), float(record_nll(logits, batch["y"])) + 3.0 * expected,
                               rtol=1e-5)


def test_coral_with_one_domain_in_the_batch_adds_nothing():
    batch = batch_of([1] * 6, seed=1)
    scalars = stub("coral")[0].update(batch)
    assert float(scalars["penalty"]) == 0.0
    torch.testing.assert_close(scalars["loss"], scalars["risk"])


def test_mmd_penalty_is_the_gaussian_mixture_mmd_averaged_over_domain_pairs():
    """DomainBed's MMD: K = sum over g in 1e-3..1e3 of exp(-g |a - b|^2), Kxx.mean() + Kyy.mean()
    - 2 Kxy.mean(), averaged over the pairs of domains present (one record is enough)."""
    batch = batch_of(DOMAINS, seed=2)
    mmd, net = stub("mmd", **{"algorithm.penalty_weight": 0.5})
    with torch.no_grad():
        features, logits = net(batch["x"], with_features=True)
    f, d = features.double().numpy(), np.asarray(DOMAINS)

    def kernel(a, b):
        squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-g * squared) for g in (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3))

    groups = [f[d == k] for k in range(N_DOMAINS)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([kernel(groups[i], groups[i]).mean() + kernel(groups[j], groups[j]).mean()
                        - 2 * kernel(groups[i], groups[j]).mean() for i, j in pairs])
    scalars = mmd.update(batch)
    np.testing.assert_allclose(float(scalars["penalty"]), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(scalars["loss"]), float(record_nll(logits, batch["y"])) + 0.5 * expected,
                               rtol=1e-5)


# ---------------------------------------------------------------- GroupDRO


def domain_bce(logits, y, domains, d):
    return float(bce(logits[domains == d], y[domains == d]))


def domain_nll(logits, y, domains, d):
    """A domain's mean over records of each record's negative log-likelihood of its label vector."""
    mine = domains == d
    return float(F.binary_cross_entropy_with_logits(logits[mine], y[mine], reduction="sum")) / int(mine.sum())


def test_groupdro_weights_follow_the_exponentiated_gradient_over_two_steps():
    """Sagawa et al. 2020, Algorithm 1 as DomainBed: q_d *= exp(eta * nll_d), q /= sum(q), objective
    q . risks with the new q; nll_d sums a record's loss over its classes (DomainBed's cross-entropy
    is a record's negative log-likelihood), the objective's risks average them. Domain 2 is absent
    from the first batch: its q is not multiplied, and the objective renormalises q over the
    domains present."""
    eta = 0.7
    groupdro, net = stub("groupdro", **{"algorithm.eta": eta})
    q = np.full(N_DOMAINS, 1.0 / N_DOMAINS)
    for step, domains in enumerate([[0, 1, 0, 1, 1, 0], [2, 0, 1, 2, 0, 1, 2]]):
        batch = batch_of(domains, seed=10 + step)
        with torch.no_grad():
            logits = net(batch["x"])
        present = sorted(set(domains))
        risks = {d: domain_bce(logits, batch["y"], batch["domain"], d) for d in present}
        for d in present:
            q[d] = q[d] * np.exp(eta * domain_nll(logits, batch["y"], batch["domain"], d))
        q = q / q.sum()
        expected = sum(q[d] * risks[d] for d in present) / sum(q[d] for d in present)
        scalars = groupdro.update(batch)
        np.testing.assert_allclose(groupdro.q.numpy(), q, rtol=1e-5)
        np.testing.assert_allclose(float(scalars["loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(groupdro.extra_state()["q"].numpy(), q, rtol=1e-5)


def test_groupdro_updates_q_from_every_workers_records(monkeypatch):
    """Under DDP the sums and counts behind q's update are all-reduced: here a fake second worker
    holding the same records doubles both, so q moves exactly as in one process, while a
    worker with different records would move it by the pooled risks."""
    from heartbeatai.training.algorithms import distributed

    batch = batch_of([0, 1, 0, 1, 2, 2], seed=3)
    other = torch.tensor([[0.0, 0.0, 6.0], [0.0, 0.0, 2.0]])  # the other worker: 2 records of domain 2, risk 3
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t.detach() + other)
    groupdro, net = stub("groupdro", **{"algorithm.eta": 0.5})
    with torch.no_grad():
        logits = net(batch["x"])
    risks = [domain_bce(logits, batch["y"], batch["domain"], d) for d in range(N_DOMAINS)]
    pooled = [risks[0], risks[1], (2 * risks[2] + 6.0) / 4]  # class means, as all-reduced
    q = np.exp(0.5 * batch["y"].shape[1] * np.asarray(pooled))  # in the exponent, summed over classes
    groupdro.update(batch)
    np.testing.assert_allclose(groupdro.q.numpy(), q / q.sum(), rtol=1e-5)


# ---------------------------------------------------------------- IRM


def test_irm_penalty_is_the_product_of_the_half_batches_scale_derivatives_by_finite_differences():
    """DomainBed's IRM: per domain, d/dw L(w * logits) at w = 1 on the even and on the odd
    records of the domain, multiplied; averaged over domains; nll + lambda * penalty, lambda 1
    before the anneal step. The derivative here by central finite differences in float64."""
    irm, net = stub("irm", **{"algorithm.penalty_weight": 5.0, "algorithm.anneal_fraction": 0.1})
    for step in range(2):
        batch = batch_of(DOMAINS, seed=20 + step)
        with torch.no_grad():
            logits = net(batch["x"]).double()
        y, d = batch["y"].double(), np.asarray(DOMAINS)

        def derivative(rows, eps=1e-4):
            return float((bce(logits[rows] * (1 + eps), y[rows]) - bce(logits[rows] * (1 - eps), y[rows])) / (2 * eps))

        terms = []
        for k in (0, 1):  # domain 2's single record has no second half
            rows = np.flatnonzero(d == k)
            terms.append(derivative(rows[0::2]) * derivative(rows[1::2]))
        penalty = np.mean(terms)
        risk = np.mean([float(bce(logits[d == k], y[d == k])) for k in range(N_DOMAINS)])
        if step == 1:
            assert irm.optimizer.state  # the first step's moments, cleared at the anneal step
        scalars = irm.update(batch)
        np.testing.assert_allclose(float(scalars["penalty"]), penalty, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(float(scalars["loss"]), risk + (5.0 if step == 1 else 1.0) * penalty, rtol=1e-5)
    assert irm.steps == 2


# ---------------------------------------------------------------- Mixup


class Recording(TinyFeatureNet):
    def forward(self, x, demographics=None, domains=None, *, with_features=False):
        self.seen = x.detach().clone()
        self.logits = super().forward(x, demographics, domains).detach()
        return super().forward(x, demographics, domains, with_features=with_features)


def test_mixup_mixes_records_of_different_domains_and_their_targets_with_one_lambda():
    """DomainBed's Mixup: x = lam x_i + (1 - lam) x_j, objective lam L(y_i) + (1 - lam) L(y_j), here
    with label smoothing: BCE is affine in the target, so the loss on mixed targets equals it."""
    domains = [0, 1, 2, 0, 1, 2, 0, 1, 0, 0]
    batch = batch_of(domains, seed=5)
    n = len(domains)
    batch["x"] = torch.zeros(n, 12, LENGTH)
    batch["x"][torch.arange(n), 0, torch.arange(n)] = 1.0  # record i is a spike at sample i: mixes are readable
    torch.manual_seed(0)
    mixup, net = stub("mixup", Recording(), **{"algorithm.alpha": 2.0, "label_smoothing": 0.1})
    scalars = mixup.update(batch)
    spikes = net.seen[:, 0, :n].numpy()
    lam = spikes[np.arange(n), np.arange(n)]
    np.testing.assert_allclose(lam, lam[0], rtol=1e-6)  # one lambda per step
    lam = float(lam[0])
    assert 0.0 < lam < 1.0
    partner = np.where(np.eye(n, dtype=bool), -1.0, spikes).argmax(1)
    np.testing.assert_allclose(spikes[np.arange(n), partner], 1 - lam, rtol=1e-5)
    assert all(domains[i] != domains[j] for i, j in enumerate(partner))

    def smoothed(y):
        return y * 0.9 + 0.05

    y = batch["y"]
    expected = lam * bce(net.logits, smoothed(y)) + (1 - lam) * bce(net.logits, smoothed(y[partner]))
    np.testing.assert_allclose(float(scalars["loss"]), float(expected), rtol=1e-5)


def test_mixup_with_one_domain_in_the_batch_mixes_within_it():
    batch = batch_of([1] * 5, seed=6)
    assert torch.isfinite(stub("mixup")[0].update(batch)["loss"])


@pytest.mark.parametrize("loss", [k for k, model in LOSSES.items() if model.hard_targets_only])
def test_mixup_refuses_a_loss_that_assumes_hard_targets_in_one_line(loss):
    with pytest.raises(ConfigError) as refused:
        TrialConfig().with_overrides({"algorithm.kind": "mixup", "loss.kind": loss})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("algorithm.kind: mixup mixes targets")
    assert f"loss.kind {loss} assumes targets in {{0, 1}}" in message
    TrialConfig().with_overrides({"algorithm.kind": "mixup", "loss.kind": "bce"})  # BCE: linear in the target


def test_a_mixup_search_offering_focal_or_asl_is_refused_before_the_study_runs():
    from heartbeatai.study.preflight import check_search_space
    from heartbeatai.study.search_space import DEFAULT_SPACE

    base = TrialConfig().with_overrides({"algorithm.kind": "mixup", "loss.kind": "bce"})
    problems = check_search_space(base, {"loss.kind": DEFAULT_SPACE["loss.kind"]})
    refused = [loss for loss, model in LOSSES.items() if model.hard_targets_only]
    assert len(problems) == len(refused)
    for loss, problem in zip(refused, problems):
        assert f"{loss!r} is not a valid loss.kind: algorithm.kind: mixup mixes targets" in problem
        assert "did you mean" not in problem


# ---------------------------------------------------------------- Fishr


def loop_grads(loss, head, z, y, create_graph=False):
    """Each record's gradient of its loss, summed over its classes (a cross-entropy's sum), in the
    head's weight and bias, one autograd.grad per record; `loss` is a mean over classes."""
    rows = []
    n_classes = y.shape[1]
    for i in range(len(z)):
        record = loss(head(z[i:i + 1]), y[i:i + 1]) * n_classes
        g = torch.autograd.grad(record, [head.weight, head.bias], create_graph=create_graph)
        rows.append(torch.cat([g[0].flatten(), g[1].flatten()]))
    return torch.stack(rows)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_fishr_per_record_gradients_match_a_per_record_autograd_loop_and_reach_the_features(loss):
    fishr, net = stub("fishr", **{"loss.kind": loss, "label_smoothing": 0.1})
    batch = batch_of(DOMAINS, seed=7)
    z = net.features(batch["x"]).detach().requires_grad_(True)
    vmapped = fishr.per_record_grads(z, batch["y"])
    looped = loop_grads(fishr.loss, net.classifier, z, batch["y"], create_graph=True)
    torch.testing.assert_close(vmapped, looped)
    (dz_vmapped,) = torch.autograd.grad(vmapped.pow(2).sum(), [z])
    (dz_looped,) = torch.autograd.grad(looped.pow(2).sum(), [z])
    assert dz_looped.abs().sum() > 0
    torch.testing.assert_close(dz_vmapped, dz_looped)


def test_fishr_penalty_is_the_spread_of_the_domains_moving_gradient_variances_over_two_steps():
    """DomainBed's Fishr: per domain the biased variance of the per-record classifier gradients,
    an exponential moving average from zero (returned divided by 1 - ema), and the mean over
    domains of the mean squared distance to the domains' mean; lambda 0 before the anneal step."""
    decay = 0.8
    fishr, net = stub("fishr", **{"algorithm.penalty_weight": 10.0, "algorithm.anneal_fraction": 0.1,
                                  "algorithm.ema_decay": decay})
    d = np.asarray(DOMAINS)
    ema = np.zeros((N_DOMAINS, (4 + 1) * N_CLASSES))
    for step in range(2):
        batch = batch_of(DOMAINS, seed=30 + step)
        z = net.features(batch["x"]).detach()
        with torch.no_grad():
            logits = net.classifier(z)
        grads = loop_grads(bce, net.classifier, z, batch["y"]).double().numpy()
        current = []
        for k in (0, 1):  # domain 2's single record has no variance: it keeps its average
            g = grads[d == k]
            ema[k] = decay * ema[k] + (1 - decay) * ((g - g.mean(0)) ** 2).mean(0)
            current.append(ema[k] / (1 - decay))
        current = np.stack(current)
        penalty = ((current - current.mean(0)) ** 2).mean(1).mean()
        scalars = fishr.update(batch)
        np.testing.assert_allclose(float(scalars["penalty"]), penalty, rtol=1e-4)
        weight = 10.0 if step == 1 else 0.0
        np.testing.assert_allclose(float(scalars["loss"]), float(bce(logits, batch["y"])) + weight * penalty, rtol=1e-5)
        np.testing.assert_allclose(fishr.ema.numpy(), ema, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(fishr.extra_state()["ema"].numpy(), ema, rtol=1e-5, atol=1e-10)


def test_fishr_penalty_trains_the_features():
    fishr, net = stub("fishr", **{"algorithm.anneal_fraction": 0.0})
    batch = batch_of(DOMAINS, seed=8)
    fishr.optimizer.zero_grad()
    features, logits = net(batch["x"], with_features=True)
    grads = fishr.per_record_grads(features, batch["y"])
    penalty = fishr.penalty(grads, batch["domain"])
    penalty.backward()
    assert net.embed.weight.grad is not None and net.embed.weight.grad.abs().sum() > 0
