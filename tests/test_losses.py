"""Losses against their formulas and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from heartbeatai.config import ConfigError, TrialConfig
from heartbeatai.losses import LOSSES
from heartbeatai.losses.module import build_loss, smooth_multilabel


def make_loss(kind: str, pos_weight=None, label_smoothing=0.0, **parameters):
    """The registered loss `kind` with its own defaults (no smoothing, no class weights) unless given."""
    return build_loss(LOSSES[kind](**parameters), label_smoothing=label_smoothing, pos_weight=pos_weight)


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
    torch.testing.assert_close(make_loss("focal", gamma=gamma, alpha=alpha)(logits, targets), expected)


def test_asl_matches_the_formula_of_ridnik_et_al(batch):
    logits, targets = batch
    p = torch.sigmoid(logits)
    p_m = (p - 0.05).clamp(min=0)
    expected = -(targets * (1 - p) ** 1.0 * torch.log(p) + (1 - targets) * p_m**4 * torch.log(1 - p_m)).mean()
    loss = make_loss("asl", gamma_neg=4.0, gamma_pos=1.0, clip=0.05)
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
    torch.testing.assert_close(make_loss("focal", gamma=0.0, alpha=None)(logits, targets), bce)
    asl = make_loss("asl", gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    torch.testing.assert_close(asl(logits, targets), bce)


def test_asl_clip_discards_easy_negatives_entirely():
    logits = torch.full((1, 1), math.log(0.04 / 0.96), requires_grad=True)  # p = 0.04 < clip
    loss = make_loss("asl", clip=0.05)(logits, torch.zeros(1, 1))
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


def test_an_unknown_loss_kind_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"^loss.kind: unknown kind 'hinge'.*known: bce, focal, asl"):
        TrialConfig().with_overrides({"loss.kind": "hinge"})


@pytest.mark.parametrize(
    "bad",
    [{"label_smoothing": 1.0}, {"loss.gamma": -1.0}, {"loss.alpha": 1.5},
     {"loss.gamma_neg": -1.0}, {"loss.gamma_pos": -1.0}, {"loss.clip": 1.0}],
)
def test_bad_loss_parameters_are_refused_by_the_trial_config_naming_the_key(bad):
    # The config is the one check: the loss classes repeat none of these.
    (key,) = bad
    kind = next((k for k, model in LOSSES.items() if key.partition(".")[2] in model.model_fields), "asl")
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        TrialConfig().with_overrides({"loss.kind": kind, **bad})


def test_a_parameter_of_another_loss_kind_is_named_as_such():
    with pytest.raises(ConfigError, match=r"^loss.gamma: a parameter of loss.kind 'focal', not loss.kind 'asl'"):
        TrialConfig().with_overrides({"loss.kind": "asl", "loss.gamma": 1.0})
    # A search samples every key of its space: there an inactive parameter does not act.
    assert TrialConfig().with_overrides({"loss.kind": "bce", "loss.gamma": 1.0}, inactive="drop").loss == LOSSES["bce"]()


def test_switching_kind_starts_from_the_new_kinds_defaults_and_keeps_shared_fields():
    focal = TrialConfig().with_overrides({"loss.kind": "focal", "loss.gamma": 3.0, "loss.pos_weight": True})
    asl = focal.with_overrides({"loss.kind": "asl"})
    assert asl.loss == LOSSES["asl"](pos_weight=True)


def test_files_written_before_the_loss_registry_still_load_under_their_kind():
    # Checkpoints, run files and trials tables of that time held every kind's parameters flat.
    legacy = {"kind": "focal", "focal_gamma": 1.5, "focal_alpha": 0.5, "asl_gamma_neg": 3.0, "asl_gamma_pos": 0.0,
              "asl_clip": 0.1, "pos_weight": True}
    assert TrialConfig.model_validate({"loss": legacy}).loss == LOSSES["focal"](gamma=1.5, alpha=0.5, pos_weight=True)
    legacy["kind"] = "asl"
    assert TrialConfig.model_validate({"loss": legacy}).loss == LOSSES["asl"](gamma_neg=3.0, clip=0.1, pos_weight=True)
