"""SE-ResNet-1D: shapes, parameter counts per toggle, MixStyle behaviour."""

from __future__ import annotations

import pytest
import torch

from heartbeatai.config import ConfigError, TrialConfig
from heartbeatai.model import MixStyle1d, build_model
from heartbeatai.training.factory import model_from_config
from model_fixtures import TINY, tiny_model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_reference_configuration_has_about_8_8_million_parameters():
    # The reference network is the trial configuration's defaults: they live there only.
    assert n_params(model_from_config(TrialConfig(), 26)) == 8_864_466


@pytest.mark.parametrize(
    ("toggle", "expected"),
    [
        ({}, 65_821),
        ({"se": False}, 62_951),
        ({"concentration": False}, 65_387),
        ({"concentration_stages": (3,)}, 65_699),
        ({"demographics": 2}, 65_831),
        ({"mixstyle_p": 0.5}, 65_821),  # MixStyle has no parameters
    ],
)
def test_parameter_count_is_pinned_per_toggle(toggle, expected):
    assert n_params(tiny_model(5, **toggle)) == expected


def test_concentration_head_adds_one_quarter_width_branch_per_tapped_stage():
    n_classes = 5
    with_head = n_params(tiny_model(n_classes))
    without = n_params(tiny_model(n_classes, concentration=False))
    # per tapped stage: 1x1 conv C -> C/4 (no bias), batch-norm (2 * C/4), classifier inputs C/4
    expected = sum(c * (c // 4) + 2 * (c // 4) + n_classes * (c // 4) for c in (8, 16, 32))
    assert with_head - without == expected


@pytest.mark.parametrize("length", [500, 777])
def test_forward_gives_one_logit_per_class_for_any_length(length):
    model = tiny_model(7, demographics=2).eval()
    logits = model(torch.randn(3, 12, length), demographics=torch.randn(3, 2))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


def test_forward_refuses_missing_demographics():
    model = tiny_model(3, demographics=2)
    with pytest.raises(ValueError, match="2 demographic inputs"):
        model(torch.randn(2, 12, 500))


def test_last_conv_stage_is_the_deepest_stage():
    model = tiny_model(3)
    assert model.last_conv_stage is model.stages[-1]


TINY_TRIAL = {"model.stem_width": 8, "model.widths": [8, 16, 32, 64], "model.depths": [1, 1, 1, 1],
              "model.se_reduction": 4, "model.dropout": 0.0}


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"mixstyle.layers": [4]}, "mixstyle.layers"),
        ({"model.concentration_stages": [0]}, "model.concentration_stages"),
        ({"mixstyle.p": 1.5}, "mixstyle.p"),
        ({"mixstyle.mix": "batch"}, "mixstyle.mix"),
        ({"model.widths": [8, 16], "model.depths": [1]}, "model.depths"),
        ({"model.kernel": 6}, "model.kernel"),
    ],
)
def test_invalid_model_arguments_are_refused_by_the_trial_config_naming_the_key(bad, key):
    # The config is the one check (build_model repeats none), so no model gets built.
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        model_from_config(TrialConfig().with_overrides({**TINY_TRIAL, **bad}), 3)


def test_build_model_refuses_no_classes_which_no_config_field_covers():
    with pytest.raises(ValueError, match="n_classes"):
        build_model(**{**TINY, "n_classes": 0})


def test_build_model_has_no_defaults_of_its_own():
    import inspect

    parameters = inspect.signature(build_model).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters)


def styled_batch(means: list[float], stds: list[float], channels: int = 4, length: int = 200) -> torch.Tensor:
    """(B, C, T) whose sample b has per-channel mean means[b] and std stds[b] over time."""
    x = torch.randn(len(means), channels, length)
    x = (x - x.mean(2, keepdim=True)) / x.std(2, keepdim=True, unbiased=False)
    return x * torch.tensor(stds).view(-1, 1, 1) + torch.tensor(means).view(-1, 1, 1)


def test_mixstyle_is_identity_in_eval_and_at_p_zero():
    x = styled_batch([0.0, 5.0, -3.0], [1.0, 2.0, 0.5])
    assert torch.equal(MixStyle1d(p=1.0, alpha=0.1, mix="random").eval()(x), x)
    assert torch.equal(MixStyle1d(p=0.0, alpha=0.1, mix="random").train()(x), x)


def test_mixstyle_mixes_statistics_but_keeps_each_signals_shape():
    torch.manual_seed(0)
    x = styled_batch([float(i) for i in range(8)], [1.0 + i for i in range(8)])
    out = MixStyle1d(p=1.0, alpha=1.0, mix="random").train()(x)
    assert not torch.allclose(out.mean(2), x.mean(2), atol=1e-3)
    standardise = lambda t: (t - t.mean(2, keepdim=True)) / t.std(2, keepdim=True)  # noqa: E731
    torch.testing.assert_close(standardise(out), standardise(x), atol=1e-3, rtol=1e-3)


def test_crossdomain_mixstyle_draws_styles_only_from_the_other_domain():
    torch.manual_seed(0)
    # Domain 0 samples share one style, domain 1 another: a same-domain partner would
    # leave a sample's statistics exactly where they were.
    x = styled_batch([0.0] * 4 + [10.0] * 4, [1.0] * 4 + [3.0] * 4)
    domains = torch.tensor([0] * 4 + [1] * 4)
    out = MixStyle1d(p=1.0, alpha=1.0, mix="crossdomain").train()(x, domains)
    means = out.mean(2)[:, 0]
    assert (means[:4] > 1e-3).all() and (means[:4] <= 10.0).all()
    assert (means[4:] < 10.0 - 1e-3).all() and (means[4:] >= 0.0).all()


def test_crossdomain_mixstyle_leaves_a_single_domain_batch_unchanged():
    x = styled_batch([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    out = MixStyle1d(p=1.0, alpha=1.0, mix="crossdomain").train()(x, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(out, x, atol=1e-4, rtol=1e-4)


def test_model_with_mixstyle_equals_model_without_in_eval_but_not_in_training():
    torch.manual_seed(1)
    mixing = tiny_model(3, mixstyle_p=1.0, mixstyle_alpha=1.0)
    plain = tiny_model(3)
    plain.load_state_dict(mixing.state_dict())
    x = torch.randn(4, 12, 500)
    torch.testing.assert_close(mixing.eval()(x), plain.eval()(x))
    torch.manual_seed(2)
    assert not torch.allclose(mixing.train()(x), plain.train()(x), atol=1e-4)


def test_seeded_training_forward_repeats_exactly():
    model = tiny_model(3, dropout=0.2, mixstyle_p=0.5).train()
    x = torch.randn(4, 12, 500)
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(3)
    assert torch.equal(model(x), first)
