"""Losses against their formulas and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from heartbeatai.config import ConfigError, LossConfig, TrialConfig
from heartbeatai.losses import build_loss, smooth_multilabel


def make_loss(kind: str, **parameters):
    """build_loss with LossConfig's defaults (no smoothing, no class weights) unless given."""
    defaults = LossConfig().model_dump(exclude={"kind", "pos_weight"})
    return build_loss(kind, **{"label_smoothing": 0.0, "pos_weight": None, **defaults, **parameters})


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.randn(6, 5) * 3, (torch.rand(6, 5) > 0.6).float()


def test_bce_matches_torch_including_positive_weights(batch):
    logits, targets = batch
    pos_weight = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    torch.testing.assert_close(make_loss("bce")(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    torch.testing.assert_close(
        make_loss("bce", pos_weight=pos_weight)(logits, targets),
        F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight),
    )


def test_focal_matches_the_p_t_formula_of_lin_et_al(batch):
    logits, targets = batch
    gamma, alpha = 2.0, 0.25
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    expected = (alpha_t * (1 - p_t) ** gamma * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")).mean()
    torch.testing.assert_close(make_loss("focal", focal_gamma=gamma, focal_alpha=alpha)(logits, targets), expected)


def test_asl_matches_the_formula_of_ridnik_et_al(batch):
    logits, targets = batch
    p = torch.sigmoid(logits)
    p_m = (p - 0.05).clamp(min=0)
    expected = -(targets * (1 - p) ** 1.0 * torch.log(p) + (1 - targets) * p_m**4 * torch.log(1 - p_m)).mean()
    loss = make_loss("asl", asl_gamma_neg=4.0, asl_gamma_pos=1.0, asl_clip=0.05)
    torch.testing.assert_close(loss(logits, targets), expected)


def test_hand_computed_values_at_logit_zero():
    zero, one = torch.zeros(1, 1), torch.ones(1, 1)
    assert make_loss("bce")(zero, one).item() == pytest.approx(math.log(2))
    # focal, y = 1, p = 1/2: alpha (1 - p)^2 log 2 = 0.25 * 0.25 * log 2
    assert make_loss("focal")(zero, one).item() == pytest.approx(0.0625 * math.log(2))
    # asl, y = 0, p = 1/2: p_m = 0.45, loss = 0.45^4 * -log(0.55)
    assert make_loss("asl")(zero, torch.zeros(1, 1)).item() == pytest.approx(0.45**4 * -math.log(0.55))


def test_focal_without_focusing_or_alpha_is_bce_and_asl_without_either_is_bce(batch):
    logits, targets = batch
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(make_loss("focal", focal_gamma=0.0, focal_alpha=None)(logits, targets), bce)
    asl = make_loss("asl", asl_gamma_neg=0.0, asl_gamma_pos=0.0, asl_clip=0.0)
    torch.testing.assert_close(asl(logits, targets), bce)


def test_asl_clip_discards_easy_negatives_entirely():
    logits = torch.full((1, 1), math.log(0.04 / 0.96), requires_grad=True)  # p = 0.04 < clip
    loss = make_loss("asl", asl_clip=0.05)(logits, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad.item() == 0.0


def test_label_smoothing_moves_hard_targets_toward_one_half():
    torch.testing.assert_close(smooth_multilabel(torch.tensor([0.0, 1.0]), 0.1), torch.tensor([0.05, 0.95]))
    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.95, 0.05]]))
    torch.testing.assert_close(make_loss("bce", label_smoothing=0.1)(logits, targets), expected)


@pytest.mark.parametrize("kind", ["bce", "focal", "asl"])
def test_every_loss_stays_finite_and_differentiable_at_extreme_logits(kind):
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    loss = make_loss(kind, label_smoothing=0.1)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_build_loss_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown loss kind"):
        make_loss("hinge")


@pytest.mark.parametrize(
    "bad",
    [{"label_smoothing": 1.0}, {"loss.focal_gamma": -1.0}, {"loss.focal_alpha": 1.5},
     {"loss.asl_gamma_neg": -1.0}, {"loss.asl_gamma_pos": -1.0}, {"loss.asl_clip": 1.0}],
)
def test_bad_loss_parameters_are_refused_by_the_trial_config_naming_the_key(bad):
    # The config is the one check: the loss classes repeat none of these.
    (key,) = bad
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        TrialConfig().with_overrides(bad)
