"""Figures of the Ablations view: each arm's test metric per held-out domain, and the arms'
effects on the rare classes.

The held-out domain is the unit of replication (docs/analysis.md, Ablation tests): seeds of
one fold share its test records and training data, so every summary over folds averages
the seeds within a fold first and counts domains, never fold x seed runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from heartbeatai.dashboard.figures import LAYOUT, UNRELIABLE_GREY, count_label, is_reliable, message_figure

OVERALL = "overall"


def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(np.mean(values))
    if len(values) < 2 or np.ptp(values) == 0:  # one domain, or a deterministic floor: no spread to show
        return mean, mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def ablation_figure(rows: pd.DataFrame, arms: list[str], metric: str) -> go.Figure:
    """Per arm, the test metric per held-out domain (seeds averaged, with the mean of their
    intervals) and overall: the mean of the domains with a t-interval over domains."""
    if rows.empty:
        return message_figure(f"no test results for {metric}")
    folds = sorted(rows["fold_id"].unique())
    figure = go.Figure(layout=LAYOUT)
    for arm in [a for a in arms if a in set(rows["arm"])]:
        runs = rows[rows["arm"] == arm]
        per_fold = runs.groupby("fold_id")[["value", "ci_low", "ci_high"]].mean().reindex(folds)
        mean, low, high = _t_interval(per_fold["value"].to_numpy(float))
        values = np.append(per_fold["value"].to_numpy(), mean)
        figure.add_scatter(
            x=folds + [OVERALL], y=values, mode="markers", name=arm,
            error_y=dict(type="data", symmetric=False, array=np.append(per_fold["ci_high"] - per_fold["value"], high - mean),
                         arrayminus=np.append(per_fold["value"] - per_fold["ci_low"], mean - low)),
        )
    return figure.update_layout(
        title=f"Test {metric.replace('_', ' ')} per arm: held-out domains (seeds averaged) and overall "
              "(mean of the domains, t-interval over domains)",
        scattermode="group", yaxis_title=metric.replace("_", " "), height=420)


def rare_class_effects_figure(rows: pd.DataFrame, metric: str, rare: list[str], reference_arm: str = "full") -> go.Figure:
    """Arm minus the reference arm per rare class, paired on (fold, seed) and averaged.

    Each class is labelled with its test positives summed over the held-out domains. A class
    that has a reliable interval in no held-out domain (fewer test positives than the study's
    minimum in every one) is greyed, its count shown in place of the effect.
    """
    if rows.empty or not rare or reference_arm not in set(rows["arm"]):
        return message_figure(f"no per-class results to compare with '{reference_arm}'")
    rows = rows[rows["class"].isin(rare)]
    wide = rows.pivot_table(index=["fold_id", "seed", "class"], columns="arm", values=metric, aggfunc="mean")
    diffs = wide.drop(columns=[reference_arm]).sub(wide[reference_arm], axis=0).groupby(level="class").mean()
    diffs = diffs.reindex(index=[c for c in rare if c in diffs.index]).T
    classes = list(diffs.columns)
    # One figure per held-out domain: the reference arm's first seed carries its positives.
    per_fold = (rows[rows["arm"] == reference_arm].sort_values("seed").drop_duplicates(["fold_id", "class"])
                .groupby("class").agg(positives=("positives", "sum"),
                                      reliable=("interval_reliable", lambda f: any(is_reliable(v) for v in f))))
    per_fold = per_fold.reindex(classes)
    positives = per_fold["positives"].to_numpy(float)
    readable = per_fold["reliable"].fillna(False).to_numpy(bool)
    z = diffs.to_numpy(float)
    shown = np.where(readable[None, :], z, np.nan)
    bound = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0
    ticks = [f"{c}<br>{count_label(n)}" for c, n in zip(classes, positives)]
    figure = go.Figure(layout=LAYOUT)
    figure.add_heatmap(
        z=shown, x=classes, y=list(diffs.index), colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
        colorbar=dict(title="Δ"), name="effect", hoverongaps=False,
        hovertemplate="%{y} on %{x}: %{z:+.3f} vs " + reference_arm + "<extra></extra>",
    )
    grey = np.where(~readable[None, :] & np.isfinite(z), 1.0, np.nan)
    labels = np.array([[count_label(n) if not ok else "" for n, ok in zip(positives, readable)]] * len(diffs.index))
    figure.add_heatmap(
        z=grey, x=classes, y=list(diffs.index), showscale=False, hoverongaps=False,
        colorscale=[[0, UNRELIABLE_GREY], [1, UNRELIABLE_GREY]], text=labels, texttemplate="%{text}",
        textfont=dict(size=10, color="#37474f"), name="too few positives in every held-out domain",
        customdata=z, hovertemplate=("%{y} on %{x}: %{customdata:+.3f} from %{text} in all, fewer than the "
                                     "study's minimum in every held-out domain: not an effect to read<extra></extra>"),
    )
    return figure.update_layout(
        title=f"Per-class effect on rare classes ({metric}, arm − {reference_arm}; rarest left; "
              "grey: too few test positives to read)",
        xaxis=dict(tickmode="array", tickvals=classes, ticktext=ticks), height=180 + 26 * len(diffs.index),
        meta={"greyed": [c for c, ok in zip(classes, readable) if not ok]},
    )
