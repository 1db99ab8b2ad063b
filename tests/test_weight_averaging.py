"""EMA and SWA: the predicting network is the average the papers define, its batch-norm
statistics are those of the training batches, and its checkpoint is a plain network's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heartbeatai.training.checkpoint import load_checkpoint, save_checkpoint
from heartbeatai.training.factory import model_from_config
from test_algorithms import N_CLASSES, build, stub_algorithm, toy_batches, trial_of


@pytest.mark.parametrize("decay", [0.3, 0.999])
def test_ema_predicts_with_the_decay_weighted_mean_of_the_snapshots(decay):
    """The bias-corrected EMA after n snapshots w_1..w_n is sum_k decay^(n-k) w_k / sum_k decay^(n-k),
    written here as that weighted mean (not as the update's recursion)."""
    ema, net = stub_algorithm("ema", **{"algorithm.decay": decay})
    snapshots = []
    for batch in toy_batches(6, seed=2):
        ema.update(batch)
        snapshots.append(net.linear.weight.detach().numpy().astype(np.float64).copy())
    weights = decay ** np.arange(len(snapshots) - 1, -1, -1)
    expected = np.tensordot(weights / weights.sum(), np.array(snapshots), axes=1)
    assert ema.predict_network() is not net
    np.testing.assert_allclose(ema.predict_network().linear.weight.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, snapshots[-1])


def test_the_ema_decay_acts_from_the_first_steps():
    # The ramp it replaced made every decay >= 0.99 the same network for 900 steps.
    networks = []
    for decay in (0.99, 0.9999):
        ema, _ = stub_algorithm("ema", **{"algorithm.decay": decay})
        for batch in toy_batches(10, seed=4):  # the stub's whole run
            ema.update(batch)
        networks.append(ema.predict_network().linear.weight.detach().numpy().copy())
    assert not np.allclose(*networks, rtol=1e-4, atol=1e-6)


def test_swa_predicts_with_the_mean_of_the_weights_after_its_start_fraction():
    swa, net = stub_algorithm("swa", **{"algorithm.start_fraction": 0.5})  # 10 steps in all: steps 6..10
    snapshots = []
    for step, batch in enumerate(toy_batches(10, seed=3), start=1):
        swa.update(batch)
        if step <= 5:
            assert swa.predict_network() is net  # the live network predicts until averaging starts
        else:
            snapshots.append(net.linear.weight.detach().numpy().copy())
    assert swa.n_averaged == 5
    np.testing.assert_allclose(swa.predict_network().linear.weight.detach().numpy(), np.mean(snapshots, axis=0),
                               rtol=1e-5, atol=1e-6)


def _stem_statistics(network, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The stem convolution's per-channel mean and unbiased variance over (batch, time)."""
    conv = network.stem[0]
    h = F.conv1d(x, conv.weight, stride=conv.stride, padding=conv.padding).double()
    return h.mean(dim=(0, 2)), h.permute(1, 0, 2).reshape(h.shape[1], -1).var(dim=1, unbiased=True)


def test_refreshed_batch_norm_statistics_are_the_mean_of_the_batches_statistics():
    batches = toy_batches(5, seed=5)
    swa = build(trial_of("swa", **{"algorithm.start_fraction": 0.0, "algorithm.bn_batches": 2}), 3)
    swa.train()
    for batch in batches[:3]:
        swa.update(batch)
    averaged = swa.predict_network()
    swa.before_validation(iter(batches[3:]))  # bn_batches 2: the last batch is never read
    stats = [_stem_statistics(averaged, b["x"]) for b in batches[3:5]]
    norm = averaged.stem[1]
    torch.testing.assert_close(norm.running_mean.double(), (stats[0][0] + stats[1][0]) / 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_var.double(), (stats[0][1] + stats[1][1]) / 2, rtol=1e-4, atol=1e-5)
    assert not averaged.training and norm.momentum == 0.1  # left ready to predict


def test_an_averaged_checkpoint_loads_into_a_plain_network_and_predicts_alike():
    batches = toy_batches(4, seed=6)
    trial = trial_of("ema")
    ema = build(trial, 3)
    ema.train()
    for batch in batches[:3]:
        ema.update(batch)
    ema.before_validation(batches[3:])
    plain = model_from_config(trial, N_CLASSES)
    plain.load_state_dict(ema.checkpoint_state()["model"])  # strict: the same keys, no AveragedModel prefix
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(batches[0]["x"]), ema.predict_network()(batches[0]["x"]))
        assert not torch.allclose(plain(batches[0]["x"]), ema.model.eval()(batches[0]["x"]))


def test_an_averaging_algorithm_refuses_another_algorithms_checkpoint_by_its_kind(tmp_path):
    save_checkpoint(tmp_path, build(trial_of("erm"), 1).checkpoint_state())
    with pytest.raises(ValueError, match="trained with algorithm 'erm', not 'swa'"):
        build(trial_of("swa"), 1).restore(load_checkpoint(tmp_path))
