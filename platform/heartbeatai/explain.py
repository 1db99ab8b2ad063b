"""Attributions of one record's predicted classes to leads and time, with SE gates.

Two captum methods:
- Integrated Gradients (Sundararajan et al., 2017) against a flat, all-zero baseline
  (an isoelectric ECG): per lead and sample, signed, summing to the change in the
  class logit between the baseline and the record.
- Grad-CAM (Selvaraju et al., 2017) on the last convolutional stage, upsampled to the
  input length: a non-negative time profile. The stem convolution mixes all leads, so
  Grad-CAM has no lead resolution: its profile is repeated over leads and the result
  says so (`lead_resolved=False`).

SE gate values are recorded per stage: they weight *feature channels* of that stage,
which the stem has already mixed across leads, so they are not lead weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from plotly.subplots import make_subplots
from torch import nn

from heartbeatai.ecg import LEADS
from heartbeatai.model.blocks import SqueezeExcitation1d

Method = Literal["integrated_gradients", "gradcam"]


@dataclass(frozen=True)
class Attribution:
    method: str
    class_indices: tuple[int, ...]
    values: np.ndarray  # (K, leads, T): one map per entry of class_indices
    lead_resolved: bool  # False: one time profile repeated over leads (Grad-CAM)
    probabilities: np.ndarray  # (n_classes,) sigmoid outputs for the record
    se_gates: dict[int, np.ndarray] = field(default_factory=dict)  # stage -> (channels,)


@contextmanager
def recording_se_gates(model: nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, each forward fills stage -> (B, channels) gate values.

    A stage's value is the gate of its last residual block, the one whose output
    feeds the next stage. Empty for a model built without SE.
    """
    gates: dict[int, torch.Tensor] = {}
    handles = []
    for number, stage in enumerate(model.stages, start=1):
        modules = [m for m in stage.modules() if isinstance(m, SqueezeExcitation1d)]
        if not modules:
            continue

        def record(_module, _inputs, output, number=number):
            gates[number] = output.detach().flatten(1)

        handles.append(modules[-1].gate.register_forward_hook(record))
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def attribute(
    model: nn.Module,
    signal: np.ndarray,
    class_indices: Sequence[int],
    method: Method = "integrated_gradients",
    demographics: np.ndarray | None = None,
    *,
    n_steps: int = 50,
    internal_batch_size: int = 8,
) -> Attribution:
    """Attribute `class_indices` of one (leads, T) float32 record; model put in eval mode."""
    if method not in ("integrated_gradients", "gradcam"):
        raise ValueError(f"unknown attribution method {method!r}: expected 'integrated_gradients' or 'gradcam'")
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 2:
        raise ValueError(f"expected one record of shape (leads, T), got {signal.shape}")
    class_indices = tuple(int(k) for k in class_indices)
    if not class_indices:
        raise ValueError("no classes to attribute")

    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.from_numpy(signal).unsqueeze(0).to(device)
        demo = None if demographics is None else torch.as_tensor(demographics, dtype=torch.float32, device=device).reshape(1, -1)

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            return model(inputs, None if demo is None else demo.expand(inputs.shape[0], -1))

        with torch.no_grad(), recording_se_gates(model) as gates:
            probabilities = torch.sigmoid(forward(x))[0]
        n_classes = probabilities.numel()
        if any(not 0 <= k < n_classes for k in class_indices):
            raise ValueError(f"class indices {class_indices} out of range for {n_classes} classes")

        if method == "integrated_gradients":
            explainer = IntegratedGradients(forward)
            maps = [
                explainer.attribute(x, baselines=torch.zeros_like(x), target=k, n_steps=n_steps,
                                    internal_batch_size=internal_batch_size)[0]
                for k in class_indices
            ]
        else:
            explainer = LayerGradCam(forward, model.last_conv_stage)
            maps = []
            for k in class_indices:
                cam = explainer.attribute(x, target=k, relu_attributions=True)  # (1, 1, T')
                cam = LayerAttribution.interpolate(cam, (x.shape[-1],), interpolate_mode="linear")
                maps.append(cam[0].expand(x.shape[1], -1))
    finally:
        model.train(was_training)

    return Attribution(
        method=method,
        class_indices=class_indices,
        values=torch.stack(maps).detach().cpu().numpy(),
        lead_resolved=method == "integrated_gradients",
        probabilities=probabilities.cpu().numpy(),
        se_gates={stage: g[0].cpu().numpy() for stage, g in gates.items()},
    )


def attribution_figure(
    signal: np.ndarray,
    attribution: Attribution,
    fs: float,
    lead_names: Sequence[str] = LEADS,
    *,
    class_position: int = 0,
    title: str | None = None,
) -> go.Figure:
    """ECG-paper layout (limb leads left, chest leads right) with the attribution behind.

    `class_position` picks one of `attribution.class_indices`. Signed attributions use a
    diverging scale centred on zero, Grad-CAM a sequential one; one colour range serves
    all leads so their attributions compare.
    """
    signal = np.asarray(signal, dtype=float)
    leads, length = signal.shape
    if len(lead_names) != leads or attribution.values.shape[1:] != signal.shape:
        raise ValueError(f"signal {signal.shape}, {len(lead_names)} lead names and attribution "
                         f"{attribution.values.shape[1:]} do not match")
    values = attribution.values[class_position]
    time = np.arange(length) / fs
    rows = (leads + 1) // 2
    signed = bool((values < 0).any())
    limit = float(np.abs(values).max()) or 1.0
    scale = dict(colorscale="RdBu_r", zmin=-limit, zmax=limit) if signed else dict(colorscale="Reds", zmin=0.0, zmax=limit)

    figure = make_subplots(rows=rows, cols=2, shared_xaxes=True, vertical_spacing=0.02, horizontal_spacing=0.04)
    for lead in range(leads):
        row, col = lead % rows + 1, lead // rows + 1
        low, high = float(signal[lead].min()), float(signal[lead].max())
        pad = 0.1 * (high - low or 1.0)
        figure.add_trace(
            go.Heatmap(x=time, y=[low - pad, high + pad], z=np.vstack([values[lead], values[lead]]), opacity=0.7,
                       showscale=lead == 0, colorbar=dict(title="attribution", len=0.5), hoverinfo="skip", **scale),
            row=row, col=col,
        )
        figure.add_trace(
            go.Scatter(x=time, y=signal[lead], mode="lines", line=dict(color="black", width=1), name=lead_names[lead],
                       showlegend=False),
            row=row, col=col,
        )
        figure.update_yaxes(title_text=lead_names[lead], row=row, col=col, showticklabels=False)
    for col in (1, 2):
        figure.update_xaxes(title_text="time (s)", row=rows, col=col)
    figure.update_layout(height=110 * rows + 120, margin=dict(l=40, r=20, t=60, b=40),
                         title=title or f"{attribution.method} attribution, class {attribution.class_indices[class_position]}")
    return figure
