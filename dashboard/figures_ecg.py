"""Figures of the Records view: a 12-lead ECG on paper, its attribution, SE gates, scores."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from heartbeatai.dashboard.figures import message_figure

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# ECG paper: 25 mm/s and 10 mm/mV, so a 5 mm major square is 0.2 s by 0.5 mV, a 1 mm minor one 0.04 s by 0.1 mV.
_MAJOR_S, _MAJOR_MV, _MINOR_S, _MINOR_MV = 0.2, 0.5, 0.04, 0.1
_PAPER_MAJOR, _PAPER_MINOR = "rgba(229, 115, 115, 0.55)", "rgba(239, 154, 154, 0.25)"


def ecg_figure(signal: np.ndarray, fs: int, attribution: np.ndarray | None = None, title: str = "") -> go.Figure:
    """Leads in two columns (limb, chest) on ECG paper; attribution shaded behind each lead."""
    if signal.ndim != 2 or signal.shape[0] != len(LEADS):
        return message_figure(f"signal of shape {signal.shape}: expected 12 leads")
    t = np.arange(signal.shape[1]) / fs
    figure = make_subplots(rows=6, cols=2, shared_xaxes=True, vertical_spacing=0.012, horizontal_spacing=0.03)
    low = float(np.floor(signal.min() / _MAJOR_MV) * _MAJOR_MV)
    high = float(np.ceil(signal.max() / _MAJOR_MV) * _MAJOR_MV)
    scale = float(np.nanmax(attribution)) if attribution is not None and np.isfinite(attribution).any() else 1.0
    for index, lead in enumerate(LEADS):
        row, col = index % 6 + 1, index // 6 + 1
        if attribution is not None:
            figure.add_heatmap(
                x=t, y=[low, high], z=np.vstack([attribution[index], attribution[index]]) / (scale or 1.0),
                zmin=0, zmax=1, colorscale="Oranges", opacity=0.5, showscale=index == 0, name=f"{lead} attribution",
                colorbar=dict(title="attribution", len=0.4, y=0.8), hovertemplate="attribution %{z:.2f}<extra></extra>",
                row=row, col=col,
            )
        figure.add_scatter(x=t, y=signal[index], mode="lines", name=lead, line=dict(color="#111", width=1.1),
                           showlegend=False, hovertemplate=f"{lead} %{{x:.3f}} s, %{{y:.2f}} mV<extra></extra>",
                           row=row, col=col)
        figure.add_annotation(text=f"<b>{lead}</b>", x=0.02, y=0.9, xref=f"x{index + 1 if index else ''} domain",
                              yref=f"y{index + 1 if index else ''} domain", showarrow=False, font=dict(size=11))
    grid = dict(showgrid=True, gridcolor=_PAPER_MAJOR, zeroline=False, showline=False)
    figure.update_xaxes(dtick=_MAJOR_S, minor=dict(dtick=_MINOR_S, showgrid=True, gridcolor=_PAPER_MINOR),
                        showticklabels=False, **grid)
    figure.update_xaxes(showticklabels=True, title_text="time (s)", row=6)
    figure.update_yaxes(range=[low, high], dtick=_MAJOR_MV, minor=dict(dtick=_MINOR_MV, showgrid=True,
                        gridcolor=_PAPER_MINOR), showticklabels=False, **grid)
    figure.update_yaxes(showticklabels=True, title_text="mV", col=1)
    return figure.update_layout(title=title, height=900, plot_bgcolor="#fffafa", paper_bgcolor="white",
                                margin=dict(l=50, r=20, t=50, b=40))


def se_gates_figure(gates: dict[str, list[float]]) -> go.Figure:
    """Squeeze-and-excitation gates: one weight per feature channel of each stage. They scale
    learned channels, not input leads, so they are drawn per channel and never as lead weights."""
    if not gates:
        return message_figure("no SE gates (the model has no SE blocks)")
    stages = list(gates)
    width = max(len(v) for v in gates.values())
    z = np.full((len(stages), width), np.nan)
    for row, stage in enumerate(stages):
        z[row, : len(gates[stage])] = gates[stage]
    figure = go.Figure(go.Heatmap(z=z, y=stages, colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="gate"),
                                  hovertemplate="%{y}, channel %{x}: %{z:.2f}<extra></extra>"))
    return figure.update_layout(template="plotly_white", title="SE channel gates per stage (feature channels, not leads)",
                                xaxis_title="channel", height=120 + 40 * len(stages), margin=dict(l=70, r=20, t=50, b=40))


def probabilities_figure(probabilities: dict[str, float], true: list[str], top: int = 12) -> go.Figure:
    if not probabilities:
        return message_figure("no probabilities stored")
    shown = sorted(set(sorted(probabilities, key=probabilities.get, reverse=True)[:top]) | (set(true) & set(probabilities)),
                   key=probabilities.get)
    figure = go.Figure(go.Bar(
        x=[probabilities[c] for c in shown], y=shown, orientation="h",
        marker_color=["#2e7d32" if c in true else "#90a4ae" for c in shown],
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    ))
    return figure.update_layout(template="plotly_white", title="Scores (green: true labels)", xaxis=dict(range=[0, 1]),
                                height=120 + 22 * len(shown), margin=dict(l=70, r=20, t=50, b=40))
