"""Explanations: shapes, SE gates, and attributions that find the lead a model uses."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from heartbeatai.explain import attribute, attribution_figure, recording_se_gates
from model_fixtures import tiny_model
V2 = 7


@pytest.fixture
def signal():
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 500)).astype(np.float32)


def model_that_sees_only(lead: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_model(4)
    with torch.no_grad():
        keep = torch.zeros(12, dtype=torch.bool)
        keep[lead] = True
        model.stem[0].weight[:, ~keep] = 0.0
    return model.eval()


def test_integrated_gradients_put_all_attribution_on_the_only_lead_the_model_sees(signal):
    result = attribute(model_that_sees_only(V2), signal, [0, 2], method="integrated_gradients", n_steps=16)
    assert result.values.shape == (2, 12, 500)
    assert result.lead_resolved
    per_lead = np.abs(result.values).sum(axis=2)  # (classes, leads)
    assert (per_lead.argmax(axis=1) == V2).all()
    assert np.allclose(np.delete(per_lead, V2, axis=1), 0.0)


def test_integrated_gradients_sum_to_the_logit_change_from_the_flat_baseline(signal):
    model = model_that_sees_only(V2)
    result = attribute(model, signal, [1], n_steps=64)
    with torch.no_grad():
        logit = model(torch.from_numpy(signal)[None])[0, 1] - model(torch.zeros(1, 12, 500))[0, 1]
    assert result.values.sum() == pytest.approx(logit.item(), rel=0.05, abs=1e-3)


def test_gradcam_gives_a_non_negative_time_profile_repeated_over_leads(signal):
    result = attribute(tiny_model(4), signal, [3], method="gradcam")
    assert result.values.shape == (1, 12, 500)
    assert not result.lead_resolved
    assert (result.values >= 0).all()
    assert np.allclose(result.values[0], result.values[0, :1])


def test_attribution_reports_probabilities_and_one_gate_vector_per_stage(signal):
    model = tiny_model(4, demographics=2)
    model.train()
    result = attribute(model, signal, [0], demographics=np.array([0.6, 1.0]), n_steps=8)
    assert model.training  # the caller's mode is restored
    assert result.probabilities.shape == (4,) and ((result.probabilities > 0) & (result.probabilities < 1)).all()
    assert {stage: gates.shape for stage, gates in result.se_gates.items()} == {1: (8,), 2: (16,), 3: (32,), 4: (64,)}
    assert all(((g > 0) & (g < 1)).all() for g in result.se_gates.values())


def test_se_gates_are_recorded_per_batch_and_absent_without_se():
    x = torch.randn(3, 12, 500)
    model, other = tiny_model(4).eval(), tiny_model(4).eval()
    with recording_se_gates(model) as gates:
        other(x)
        assert gates == {}  # only the watched model's forward records
        model(x)
    assert gates[4].shape == (3, 64)
    plain = tiny_model(4, se=False).eval()
    with recording_se_gates(plain) as gates:
        plain(x)
    assert gates == {}


def test_attribute_rejects_bad_requests(signal):
    model = tiny_model(4)
    with pytest.raises(ValueError, match="out of range"):
        attribute(model, signal, [4])
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(model, signal, [0], method="saliency")


def test_attribution_figure_draws_twelve_leads_with_their_attribution(signal):
    result = attribute(model_that_sees_only(V2), signal, [0], n_steps=8)
    figure = attribution_figure(signal, result, fs=50.0)
    assert isinstance(figure, go.Figure)
    lines = [t for t in figure.data if isinstance(t, go.Scatter)]
    heatmaps = [t for t in figure.data if isinstance(t, go.Heatmap)]
    assert [t.name for t in lines] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert len(heatmaps) == 12 and heatmaps[0].zmin == -heatmaps[0].zmax  # signed, centred on zero
    assert lines[0].x[-1] == pytest.approx(499 / 50.0)
    with pytest.raises(ValueError, match="do not match"):
        attribution_figure(signal[:6], result, fs=50.0)
