"""Figures of the Records view: a 12-lead ECG on paper, its attribution, SE gates, scores."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from heartbeatai.dashboard.figures import message_figure
from heartbeatai.ecg import LEADS

# ECG paper: 25 mm/s and 10 mm/mV, so a 5 mm major square is 0.2 s by 0.5 mV, a 1 mm minor one 0.04 s by 0.1 mV.
_MAJOR_S, _MAJOR_MV, _MINOR_S, _MINOR_MV = 0.2, 0.5, 0.04, 0.1
_PAPER_MAJOR, _PAPER_MINOR = "rgba(229, 115, 115, 0.55)", "rgba(239, 154, 154, 0.25)"


def ecg_figure(signal: np.ndarray, fs: int, attribution: np.ndarray | None = None, title: str = "") -> go.Figure:
    """Leads in two columns (limb, chest) on ECG paper; attribution shaded behind each lead.

    Written as a plain figure spec with hand-placed axes: make_subplots and per-axis updates
    cost about half a second of plotly validation for 12 panels, the spec a few ms.
    """
    if signal.ndim != 2 or signal.shape[0] != len(LEADS):
        return message_figure(f"signal of shape {signal.shape}: expected 12 leads")
    t = np.round(np.arange(signal.shape[1]) / fs, 5)
    low = float(np.floor(signal.min() / _MAJOR_MV) * _MAJOR_MV)
    high = float(np.ceil(signal.max() / _MAJOR_MV) * _MAJOR_MV)
    if attribution is not None:
        # Integrated gradients are signed: then blue against, red for the class, white at zero.
        signed = bool((attribution < 0).any())
        scale = float(np.nanmax(np.abs(attribution))) if np.isfinite(attribution).any() else 0.0
        shading = (dict(colorscale="RdBu_r", zmin=-1, zmax=1, zmid=0) if signed
                   else dict(colorscale="Oranges", zmin=0, zmax=1))
    data, layout = [], {}
    paper = dict(showgrid=True, gridcolor=_PAPER_MAJOR, zeroline=False, showline=False)
    row_height, gap = 1 / 6, 0.012
    for index, lead in enumerate(LEADS):
        row, col = index % 6, index // 6
        n = index + 1
        suffix = "" if n == 1 else str(n)  # plotly names the first axes x and y, then x2, y2, ...
        x_name, y_name = f"x{suffix}", f"y{suffix}"
        if attribution is not None:
            data.append(dict(
                type="heatmap", x=t, y=[low, high], z=np.vstack([attribution[index]] * 2) / (scale or 1.0),
                **shading, opacity=0.5, showscale=index == 0, name=f"{lead} attribution",
                colorbar=dict(title=dict(text="attribution"), len=0.4, y=0.8),
                hovertemplate="attribution %{z:.2f}<extra></extra>", xaxis=x_name, yaxis=y_name,
            ))
        data.append(dict(type="scatter", mode="lines", x=t, y=np.round(signal[index], 4), name=lead, showlegend=False,
                         line=dict(color="#111", width=1.1), xaxis=x_name, yaxis=y_name,
                         hovertemplate=f"{lead} %{{x:.3f}} s, %{{y:.2f}} mV<extra></extra>"))
        bottom = 1 - (row + 1) * row_height + gap / 2
        layout[f"xaxis{suffix}"] = dict(
            domain=[0.0, 0.485] if col == 0 else [0.515, 1.0], anchor=y_name, matches=None if n == 1 else "x",
            dtick=_MAJOR_S, minor=dict(dtick=_MINOR_S, showgrid=True, gridcolor=_PAPER_MINOR),
            showticklabels=row == 5, title=dict(text="time (s)") if row == 5 else None, **paper)
        layout[f"yaxis{suffix}"] = dict(
            domain=[bottom, bottom + row_height - gap], anchor=x_name, range=[low, high], dtick=_MAJOR_MV,
            minor=dict(dtick=_MINOR_MV, showgrid=True, gridcolor=_PAPER_MINOR), showticklabels=col == 0,
            title=dict(text="mV") if col == 0 else None, **paper)
    annotations = [dict(text=f"<b>{lead}</b>", x=0.02, y=0.9, xref=f"x{i + 1 if i else ''} domain",
                        yref=f"y{i + 1 if i else ''} domain", showarrow=False, font=dict(size=11))
                   for i, lead in enumerate(LEADS)]
    layout.update(title=dict(text=title), height=900, plot_bgcolor="#fffafa", paper_bgcolor="white",
                  margin=dict(l=50, r=20, t=50, b=40), annotations=annotations)
    return go.Figure(data=data, layout=layout, _validate=False)


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
    names = [f"stage {s}" if str(s).isdigit() else str(s) for s in stages]  # the study stores stages by number
    figure = go.Figure(go.Heatmap(z=z, y=names, colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="gate"),
                                  hovertemplate="%{y}, channel %{x}: %{z:.2f}<extra></extra>"))
    return figure.update_layout(title="SE channel gates per stage (feature channels, not leads)",
                                xaxis_title="channel", yaxis_type="category", height=120 + 40 * len(stages),
                                margin=dict(l=70, r=20, t=50, b=40))


def probabilities_figure(probabilities: dict[str, float], true: list[str], top: int = 12,
                         thresholds: dict[str, float] | None = None) -> go.Figure:
    """The record's top scores as bars, with each class's decision threshold as a tick on its
    bar: a class is called where its score reaches the threshold, so a top score below its
    tick is no call (issue 24)."""
    if not probabilities:
        return message_figure("no probabilities stored")
    shown = sorted(set(sorted(probabilities, key=probabilities.get, reverse=True)[:top]) | (set(true) & set(probabilities)),
                   key=probabilities.get)
    figure = go.Figure(go.Bar(
        x=[probabilities[c] for c in shown], y=shown, orientation="h",
        marker_color=["#2e7d32" if c in true else "#90a4ae" for c in shown],
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    ))
    marked = [c for c in shown if thresholds and c in thresholds and thresholds[c] == thresholds[c]]
    if marked:
        figure.add_scatter(x=[thresholds[c] for c in marked], y=marked, mode="markers", name="threshold",
                           marker=dict(symbol="line-ns", size=18, line=dict(width=3, color="#c62828")),
                           hovertemplate="%{y}: decision threshold %{x:.3f}<extra></extra>")
    title = "Scores (green: true labels" + ("; red tick: the class's decision threshold)" if marked else ")")
    return figure.update_layout(title=title, xaxis=dict(range=[0, 1]), showlegend=False,
                                height=120 + 22 * len(shown), margin=dict(l=70, r=20, t=50, b=40))
