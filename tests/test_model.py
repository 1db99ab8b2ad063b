"""SE-ResNet-1D: shapes, parameter counts per toggle, MixStyle behaviour."""

from __future__ import annotations

import pytest
import torch

from heartbeatai.model import MixStyle1d, build_model

TINY = dict(stem_width=8, widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), se_reduction=4, dropout=0.0)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_reference_configuration_has_about_8_8_million_parameters():
    assert n_params(build_model(26)) == 8_864_466


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
    assert n_params(build_model(5, **TINY, **toggle)) == expected


def test_concentration_head_adds_one_quarter_width_branch_per_tapped_stage():
    n_classes = 5
    with_head = n_params(build_model(n_classes, **TINY))
    without = n_params(build_model(n_classes, **TINY, concentration=False))
    # per tapped stage: 1x1 conv C -> C/4 (no bias), batch-norm (2 * C/4), classifier inputs C/4
    expected = sum(c * (c // 4) + 2 * (c // 4) + n_classes * (c // 4) for c in (8, 16, 32))
    assert with_head - without == expected


@pytest.mark.parametrize("length", [500, 777])
def test_forward_gives_one_logit_per_class_for_any_length(length):
    model = build_model(7, **TINY, demographics=2).eval()
    logits = model(torch.randn(3, 12, length), demographics=torch.randn(3, 2))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


def test_forward_refuses_missing_demographics():
    model = build_model(3, **TINY, demographics=2)
    with pytest.raises(ValueError, match="2 demographic inputs"):
        model(torch.randn(2, 12, 500))


def test_last_conv_stage_is_the_deepest_stage():
    model = build_model(3, **TINY)
    assert model.last_conv_stage is model.stages[-1]


@pytest.mark.parametrize(
    "bad",
    [
        {"mixstyle_layers": (4,)},
        {"concentration_stages": (0,)},
        {"mixstyle_p": 1.5},
        {"mixstyle_mix": "batch"},
        {"widths": (8, 16), "depths": (1,)},
        {"kernel": 6},
    ],
)
def test_build_model_rejects_invalid_arguments(bad):
    with pytest.raises(ValueError):
        build_model(3, **{**TINY, **bad})


def styled_batch(means: list[float], stds: list[float], channels: int = 4, length: int = 200) -> torch.Tensor:
    """(B, C, T) whose sample b has per-channel mean means[b] and std stds[b] over time."""
    x = torch.randn(len(means), channels, length)
    x = (x - x.mean(2, keepdim=True)) / x.std(2, keepdim=True, unbiased=False)
    return x * torch.tensor(stds).view(-1, 1, 1) + torch.tensor(means).view(-1, 1, 1)


def test_mixstyle_is_identity_in_eval_and_at_p_zero():
    x = styled_batch([0.0, 5.0, -3.0], [1.0, 2.0, 0.5])
    assert torch.equal(MixStyle1d(p=1.0, alpha=0.1).eval()(x), x)
    assert torch.equal(MixStyle1d(p=0.0, alpha=0.1).train()(x), x)


def test_mixstyle_mixes_statistics_but_keeps_each_signals_shape():
    torch.manual_seed(0)
    x = styled_batch([float(i) for i in range(8)], [1.0 + i for i in range(8)])
    out = MixStyle1d(p=1.0, alpha=1.0).train()(x)
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
    mixing = build_model(3, **TINY, mixstyle_p=1.0, mixstyle_alpha=1.0)
    plain = build_model(3, **TINY)
    plain.load_state_dict(mixing.state_dict())
    x = torch.randn(4, 12, 500)
    torch.testing.assert_close(mixing.eval()(x), plain.eval()(x))
    torch.manual_seed(2)
    assert not torch.allclose(mixing.train()(x), plain.train()(x), atol=1e-4)


def test_seeded_training_forward_repeats_exactly():
    model = build_model(3, **{**TINY, "dropout": 0.2}, mixstyle_p=0.5).train()
    x = torch.randn(4, 12, 500)
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(3)
    assert torch.equal(model(x), first)
