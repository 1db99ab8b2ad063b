"""Figures of the Ablations view: each arm's paired difference from full per held-out domain and
across them, and the arms' effects on the rare classes.

The held-out domain is the unit of replication (docs/analysis.md, Ablation tests): seeds of
one fold share its test records and training data, so every summary over folds averages
the seeds within a fold first and counts domains, never fold x seed runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from heartbeatai.arms import PREVALENCE
from heartbeatai.dashboard.figures import LAYOUT, UNRELIABLE_GREY, count_label, is_reliable, message_figure

OVERALL = "overall"


def difference_figure(tests: pd.DataFrame, arms: list[str], metric: str) -> go.Figure:
    """Per arm, the paired difference arm − full per held-out domain and across them, each with
    the 95% interval the ablation_tests table holds for exactly that difference (records and
    seeds per domain; the random-effects pooling across domains), and the ROPE as a band."""
    if tests.empty:
        return message_figure(f"no paired tests for {metric} yet: `heartbeatai study analyse` writes them")
    folds = sorted(tests.loc[tests["scope"] == "fold", "fold_id"].unique())
    order = folds + [OVERALL]
    figure = go.Figure(layout=LAYOUT)
    drawn = [a for a in arms if a in set(tests["arm"])]
    for arm in drawn:
        rows = tests[tests["arm"] == arm].assign(
            x=lambda f: np.where(f["scope"] == "across", OVERALL, f["fold_id"])).set_index("x").reindex(order)
        identical = rows["identical"].fillna(False).astype(bool).to_numpy() if "identical" in rows else np.zeros(len(rows), bool)
        figure.add_scatter(
            x=order, y=rows["diff"], mode="markers", name=arm,
            customdata=np.stack([rows["diff_lo"], rows["diff_hi"], np.where(identical, "identical to full", "")], axis=1),
            hovertemplate=f"{arm}, %{{x}}: %{{y:+.4f}} [%{{customdata[0]:+.4f}}, %{{customdata[1]:+.4f}}] %{{customdata[2]}}"
                          "<extra></extra>",
            error_y=dict(type="data", symmetric=False, array=rows["diff_hi"] - rows["diff"],
                         arrayminus=rows["diff"] - rows["diff_lo"]),
        )
    rope = tests["rope"].dropna()
    if len(rope):
        figure.add_hrect(y0=-float(rope.iloc[0]), y1=float(rope.iloc[0]), fillcolor="#9e9e9e", opacity=0.15,
                         line_width=0, annotation_text="ROPE", annotation_position="top left")
    figure.add_hline(y=0, line_color="#616161", line_width=1)
    off_axis = _scale_to_arms(figure, tests[tests["arm"].isin(drawn)])
    return figure.update_layout(meta={"off_axis": off_axis},
        title=f"Paired difference in test {metric.replace('_', ' ')}, arm − full (positive: arm better); 95% interval "
              "per held-out domain (records and seeds) and across them (random effects, Knapp-Hartung)",
        scattermode="group", yaxis_title=f"Δ {metric.replace('_', ' ')}", height=420)


def _scale_to_arms(figure: go.Figure, shown: pd.DataFrame) -> list[str]:
    """Scale the y-axis to the shown differences, their interval ends and 0, with a small margin.

    The prevalence floor sits far below every trained arm (-0.3 and more in AUROC); letting it
    into the range squeezes the arms' differences of 0.02-0.05 into one line (issue 24). It is
    kept off the range where it lies outside, and a note gives its values. Returns the arms
    left off the axis."""
    floor = shown["arm"] == PREVALENCE
    arms = shown[~floor] if (~floor).any() else shown
    ends = pd.concat([arms["diff_lo"], arms["diff_hi"], arms["diff"], pd.Series([0.0])]).dropna()
    low, high = float(ends.min()), float(ends.max())
    pad = 0.08 * max(high - low, 1e-3)
    low, high = low - pad, high + pad
    figure.update_yaxes(range=[low, high])
    outside = shown[floor & ((shown["diff_lo"] < low) | (shown["diff_hi"] > high)
                             | ~shown["diff"].between(low, high))].dropna(subset=["diff"])
    if outside.empty:
        return []
    figure.add_annotation(
        text=f"{PREVALENCE} floor off the axis: {outside['diff'].min():+.3f} to {outside['diff'].max():+.3f} "
             "(choose it alone in the arms filter to see it)",
        xref="paper", yref="paper", x=0, y=0 if outside["diff"].max() < low else 1, xanchor="left",
        yanchor="bottom" if outside["diff"].max() < low else "top", showarrow=False,
        font=dict(size=11, color="#616161"))
    return [PREVALENCE]


# The mark a decided per-class comparison carries on the heat map (class_tests' decision).
DECISION_MARKS = {"better": "▲", "worse": "▼", "equivalent": "=", "at the threshold": "?"}


def rare_class_effects_figure(rows: pd.DataFrame, metric: str, rare: list[str], reference_arm: str = "full",
                              tests: pd.DataFrame | None = None, domain: str | None = None) -> go.Figure:
    """Arm minus the reference arm per rare class, across the held-out domains or, with
    `domain` (a fold id; `rows` and `tests` then hold that fold's alone), on that one.

    With `tests` (the store's class_tests of this protocol and metric, over all seeds) each cell
    is the across-domain paired difference with its interval and its Holm decision in the
    per-class family (marked ▲ better, ▼ worse, = equivalent); without (one seed chosen, or a
    store written before class_tests) it is the point difference paired on (fold, seed) and
    averaged, descriptive. Each class is labelled with its test positives summed over the
    held-out domains. A class that has a reliable interval in no held-out domain (fewer test
    positives than the study's minimum in every one) is greyed, its count shown in place of
    the effect.
    """
    if rows.empty or not rare or reference_arm not in set(rows["arm"]):
        return message_figure(f"no per-class results to compare with '{reference_arm}'")
    rows = rows[rows["class"].isin(rare)]
    wide = rows.pivot_table(index=["fold_id", "seed", "class"], columns="arm", values=metric, aggfunc="mean")
    diffs = wide.drop(columns=[reference_arm]).sub(wide[reference_arm], axis=0).groupby(level="class").mean()
    diffs = diffs.reindex(index=[c for c in rare if c in diffs.index]).T
    classes = list(diffs.columns)
    points = diffs.to_numpy(float).copy()  # the descriptive differences: what a greyed cell's hover names
    decided = tests is not None and not tests.empty
    marks = np.full(diffs.shape, "", dtype=object)
    hover = np.full(diffs.shape, "", dtype=object)
    if decided:
        found = tests.set_index(["arm", "class"])
        for i, arm in enumerate(diffs.index):
            for j, name in enumerate(classes):
                if (arm, name) not in found.index:
                    diffs.iloc[i, j] = np.nan  # no domain with enough positives: no comparison
                    continue
                row = found.loc[(arm, name)]
                diffs.iloc[i, j] = row["diff"]
                marks[i, j] = DECISION_MARKS.get(row["decision"], "")
                where = (f"on {domain}, {int(row['n_seeds'])} seed(s)" if domain else
                         f"over {int(row['n_folds'])} domain(s)")
                hover[i, j] = (f"{row['diff']:+.3f} [{row['diff_lo']:+.3f}, {row['diff_hi']:+.3f}] {where}; "
                               f"Holm p {row['p_holm']:.3g}: {row['decision']}")
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
        **(dict(text=marks, texttemplate="%{text}", textfont=dict(size=14), customdata=hover,
                hovertemplate="%{y} on %{x}: %{customdata}<extra></extra>") if decided else
           dict(hovertemplate="%{y} on %{x}: %{z:+.3f} vs " + reference_arm + "<extra></extra>")),
    )
    grey = np.where(~readable[None, :] & np.isfinite(points), 1.0, np.nan)
    labels = np.array([[count_label(n) if not ok else "" for n, ok in zip(positives, readable)]] * len(diffs.index))
    figure.add_heatmap(
        z=grey, x=classes, y=list(diffs.index), showscale=False, hoverongaps=False,
        colorscale=[[0, UNRELIABLE_GREY], [1, UNRELIABLE_GREY]], text=labels, texttemplate="%{text}",
        textfont=dict(size=10, color="#37474f"), name="too few positives in every held-out domain",
        customdata=points, hovertemplate=("%{y} on %{x}: %{customdata:+.3f} from %{text} in all, fewer than the "
                                     "study's minimum in every held-out domain: not an effect to read<extra></extra>"),
    )
    scope = f"on {domain}" if domain else "across domains"
    family = "arm × class × domain" if domain else "arm × class"
    title = (f"Per-class effect on rare classes ({metric}, arm − {reference_arm} {scope}; rarest left; grey: "
             f"too few test positives). Holm over every {family} of this metric: ▲ better, ▼ worse, = equivalent"
             if decided else
             f"Per-class effect on rare classes ({metric}, arm − {reference_arm} {scope}; rarest left; grey: too few "
             "test positives to read). Point differences of one seed, descriptive: no interval, no decision")
    return figure.update_layout(
        title=dict(text=title, font=dict(size=13)),
        xaxis=dict(tickmode="array", tickvals=classes, ticktext=ticks), height=180 + 26 * len(diffs.index),
        meta={"greyed": [c for c, ok in zip(classes, readable) if not ok], "decided": decided},
    )
