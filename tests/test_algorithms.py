"""Every registered training algorithm: its step against an independent computation, learning,
exact resume through a real checkpoint file; parametrised over the registry, so an algorithm
is tested the day it is registered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from heartbeatai.config import VARIANTS, TrialConfig
from heartbeatai.study.search_space import declared_space
from heartbeatai.training.algorithms import ALGORITHMS
from heartbeatai.training.checkpoint import load_checkpoint, save_checkpoint
from heartbeatai.training.factory import algorithm_from_config, loss_from_config, model_from_config

N_CLASSES, N_DOMAINS, LENGTH, BATCH = 3, 2, 128, 12
TINY = {"model.stem_width": 8, "model.widths": [8, 16], "model.depths": [1, 1], "model.dropout": 0.1,
        "optim.lr": 0.01, "optim.epochs": 1, "label_smoothing": 0.0}


def trial_of(kind: str, **overrides) -> TrialConfig:
    # An algorithm that mixes targets refuses the default ASL (hard targets only).
    loss = {"loss.kind": "bce"} if getattr(ALGORITHMS[kind].Params, "mixes_targets", False) else {}
    return TrialConfig().with_overrides({**TINY, "algorithm.kind": kind, **loss, **overrides})


def toy_batches(n_batches: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Class c is present when lead c carries a 5 Hz tone; domain 1 has twice the noise."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        y = (rng.random((BATCH, N_CLASSES)) < 0.4).astype(np.float32)
        domain = rng.integers(0, N_DOMAINS, BATCH)
        x = rng.normal(0, 1, (BATCH, 12, LENGTH)) * (1 + domain)[:, None, None]
        tone = np.sin(2 * np.pi * 5 * np.arange(LENGTH) / 100)
        x[:, :N_CLASSES, :] += 3 * y[:, :, None] * tone
        batches.append({"x": torch.tensor(x, dtype=torch.float32), "y": torch.from_numpy(y),
                        "domain": torch.from_numpy(domain)})
    return batches


def build(trial: TrialConfig, steps_per_epoch: int):
    torch.manual_seed(0)
    model = model_from_config(trial, N_CLASSES)
    loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32))
    return algorithm_from_config(trial, model, model, loss, steps_per_epoch=steps_per_epoch, n_domains=N_DOMAINS,
                                 device=torch.device("cpu"))


def params_of(algorithm) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in algorithm.predict_network().parameters()])


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_every_algorithm_learns_a_learnable_toy_problem(kind):
    """What the algorithm predicts with (an average, where it keeps one) ends with a lower
    configured loss on the toy records: the criterion every algorithm shares, whatever its
    objective adds (a mixup objective on mixed targets has an entropy floor; an adversary's
    loss rises as it is fooled)."""
    batches = toy_batches(8)
    # A penalty annealed in half way: the first half learns the classes, the second keeps them
    # under the full penalty (at DomainBed's weights, IRM's from step 3 of 24 stalls a toy this short).
    annealed = {"algorithm.anneal_fraction": 0.5} if "anneal_fraction" in ALGORITHMS[kind].Params.model_fields else {}
    algorithm = build(trial_of(kind, **{"optim.epochs": 3, **annealed}), len(batches))

    def predicted_loss() -> float:
        algorithm.before_validation(batches)
        network = algorithm.predict_network().eval()
        with torch.no_grad():
            return float(np.mean([float(algorithm.loss(network(b["x"], None, b["domain"]), b["y"])) for b in batches]))

    first = predicted_loss()
    for _ in range(3):
        algorithm.train()
        for b in batches:
            algorithm.update(b)
    last = predicted_loss()
    assert last < 0.85 * first, f"{kind}: configured loss of the predicting network {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_every_algorithm_resumes_exactly_from_a_checkpoint_file(kind, tmp_path):
    batches = toy_batches(6)
    # The anneal step (3 of 6) is the first resumed one: the optimiser's reset must repeat too.
    annealed = "anneal_fraction" in ALGORITHMS[kind].Params.model_fields
    trial = trial_of(kind, **{"algorithm.anneal_fraction": 0.5} if annealed else {})
    straight = build(trial, len(batches))
    straight.train()
    for b in batches[:3]:
        straight.update(b)
    rng = torch.get_rng_state()
    save_checkpoint(tmp_path, straight.checkpoint_state())
    for b in batches[3:]:
        straight.update(b)

    resumed = build(trial, len(batches))
    resumed.restore(load_checkpoint(tmp_path))  # weights_only: the state is plain containers and tensors
    resumed.train()
    torch.set_rng_state(rng)  # the loop restores the RNG from the checkpoint likewise
    for b in batches[3:]:
        resumed.update(b)
    assert torch.equal(params_of(resumed), params_of(straight))


def test_a_checkpoint_of_another_algorithm_is_refused(tmp_path):
    save_checkpoint(tmp_path, build(trial_of("erm"), 1).checkpoint_state())
    with pytest.raises(ValueError, match="trained with algorithm 'erm', not 'vrex'"):
        build(trial_of("vrex"), 1).restore(load_checkpoint(tmp_path))


class LinearOnMeans(nn.Module):
    """A network whose logits an independent computation can repeat: a linear map of lead means."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(12, N_CLASSES)

    def forward(self, x, demographics=None, domains=None):
        return self.linear(x.mean(dim=2))


def stub_algorithm(kind: str, **overrides):
    trial = trial_of(kind, **{"loss.kind": "bce", **overrides})
    net = LinearOnMeans()
    loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32))
    return algorithm_from_config(trial, net, net, loss, steps_per_epoch=10, n_domains=N_DOMAINS,
                                 device=torch.device("cpu")), net


def test_erm_takes_one_adamw_step_on_the_configured_loss():
    batch = toy_batches(1)[0]
    erm, net = stub_algorithm("erm")
    reference = LinearOnMeans()  # the same initial weights (seeded)
    optimizer = torch.optim.AdamW([{"params": [reference.linear.weight], "weight_decay": 0.01},
                                   {"params": [reference.linear.bias], "weight_decay": 0.0}], lr=erm.optimizer.param_groups[0]["lr"])
    expected = F.binary_cross_entropy_with_logits(reference(batch["x"]), batch["y"])
    expected.backward()
    optimizer.step()
    scalars = erm.update(batch)
    torch.testing.assert_close(scalars["loss"], expected.detach())
    torch.testing.assert_close(net.linear.weight, reference.linear.weight)


def test_vrex_objective_is_mean_risk_plus_weighted_variance_of_the_domains_risks():
    """DomainBed's VREx (Krueger et al. 2021): losses per domain, mean + lambda * ((losses - mean)**2).mean(),
    lambda 1 until the anneal step; here with multi-label BCE per domain, computed independently."""
    batches = toy_batches(3, seed=4)
    vrex, net = stub_algorithm("vrex", **{"algorithm.penalty_weight": 7.0, "algorithm.anneal_fraction": 0.2})
    for step, batch in enumerate(batches):
        with torch.no_grad():
            logits = net(batch["x"])
        risks = torch.stack([F.binary_cross_entropy_with_logits(logits[batch["domain"] == d], batch["y"][batch["domain"] == d])
                             for d in range(N_DOMAINS) if (batch["domain"] == d).any()])
        weight = 7.0 if step >= 2 else 1.0
        expected = risks.mean() + weight * ((risks - risks.mean()) ** 2).mean()
        if step == 2:
            assert vrex.optimizer.state  # moments from the first steps, reset at the anneal step
        scalars = vrex.update(batch)
        torch.testing.assert_close(scalars["loss"], expected)
        torch.testing.assert_close(scalars["penalty"], ((risks - risks.mean()) ** 2).mean())
    assert vrex.steps == 3


def test_vrex_with_one_domain_in_the_batch_is_erm():
    batch = toy_batches(1)[0]
    batch["domain"] = torch.zeros_like(batch["domain"])
    vrex, vrex_net = stub_algorithm("vrex", **{"algorithm.anneal_fraction": 0.0})
    erm, erm_net = stub_algorithm("erm")
    scalars = vrex.update(batch)
    assert float(scalars["penalty"]) == 0.0
    torch.testing.assert_close(scalars["loss"], erm.update(batch)["loss"])
    torch.testing.assert_close(vrex_net.linear.weight, erm_net.linear.weight)


@pytest.mark.parametrize(("section", "kind"), [(s, k) for s, registry in VARIANTS.items() for k in registry])
def test_every_declared_search_distribution_lies_inside_its_parameters_bounds(section, kind):
    """A search must never propose a value the trial config then refuses: both ends of every
    declared distribution validate under that kind."""
    base = trial_of(kind) if section == "algorithm" else TrialConfig()  # a loss this algorithm accepts
    for key, dist in declared_space(section, kind).items():
        ends = next(v for v in dist.__dict__.values() if v is not None)
        for value in ends:
            base.with_overrides({f"{section}.kind": kind, key: value})


def test_heartbeatai_algorithms_lists_every_registered_kind_with_its_parameters(capsys):
    from heartbeatai.cli import main

    assert main(["algorithms", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    for section, registry in VARIANTS.items():
        listed = {entry["kind"]: entry for entry in listing[section]}
        assert list(listed) == list(registry)
        for kind, model in registry.items():
            assert set(listed[kind]["parameters"]) == {f"{section}.{n}" for n in model.model_fields if n != "kind"}
            assert {k: p["search"] for k, p in listed[kind]["parameters"].items() if p["search"]} == {
                k: {name: list(v) for name, v in d.model_dump().items() if v is not None}
                for k, d in declared_space(section, kind).items()}


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_every_algorithm_steps_on_a_model_with_demographics(kind):
    """Demographics join the features in the classifier: what Fishr's head sees, what Mixup mixes."""
    from heartbeatai.training.factory import N_DEMOGRAPHICS

    batch = toy_batches(1)[0]
    batch["demographics"] = torch.rand(len(batch["y"]), N_DEMOGRAPHICS)
    algorithm = build(trial_of(kind, **{"model.demographics": True}), 1)
    algorithm.train()
    scalars = algorithm.update(batch)
    assert list(scalars)[0] == "loss" and all(torch.isfinite(v) and v.ndim == 0 for v in scalars.values())
