"""Figures of the Studies, Degradation and Ablations views: frames of the results store in,
plotly figures out. No I/O and no Dash here, so each is testable on its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from heartbeatai.results.schema import TRIAL_STATUSES

STATUS_COLOURS = {"completed": "#2e7d32", "early_stopped": "#f9a825", "errored": "#c62828",
                  "running": "#1565c0", "pending": "#b0bec5"}
METRIC_NAMES = {"f1": "F1", "auroc": "AUROC", "auprc": "AUPRC", "challenge_score": "challenge score"}
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))


def message_figure(text: str) -> go.Figure:
    """An empty figure that says why it is empty (missing table, nothing selected)."""
    figure = go.Figure(layout=_LAYOUT)
    figure.add_annotation(text=text, showarrow=False, font=dict(size=15, color="#555"), x=0.5, y=0.5,
                          xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure.update_layout(height=260, meta={"message": text})


def rare_first(prevalence: pd.Series) -> list[str]:
    """Classes from the rarest to the most common, so the rare ones stand together."""
    return list(prevalence.sort_values(kind="stable").index)


# -- Studies ------------------------------------------------------------------------------

def progress_figure(progress: pd.DataFrame) -> go.Figure:
    if progress.empty:
        return message_figure("no trials yet")
    folds = progress["fold_id"].tolist()
    figure = go.Figure(layout=_LAYOUT)
    for status in TRIAL_STATUSES:
        figure.add_bar(y=folds, x=progress[status], name=status.replace("_", " "), orientation="h",
                       marker_color=STATUS_COLOURS[status])
    return figure.update_layout(barmode="stack", title="Trials per fold", xaxis_title="trials",
                                height=120 + 28 * len(folds), yaxis=dict(autorange="reversed"))


def dataset_card_figure(card: pd.DataFrame) -> go.Figure:
    if card.empty:
        return message_figure("no dataset card")
    prevalence = card.pivot_table(index="class", columns="domain", values="prevalence", aggfunc="first")
    counts = card.pivot_table(index="class", columns="domain", values="count", aggfunc="first")
    order = rare_first(prevalence.mean(axis=1))
    prevalence, counts = prevalence.loc[order], counts.reindex(index=order, columns=prevalence.columns)
    figure = go.Figure(go.Heatmap(
        z=prevalence.to_numpy() * 100, x=list(prevalence.columns), y=order, customdata=counts.to_numpy(),
        colorscale="Blues", colorbar=dict(title="%"),
        hovertemplate="%{y} in %{x}: %{z:.2f}% (%{customdata} records)<extra></extra>",
    ), layout=_LAYOUT)
    return figure.update_layout(title="Class prevalence per domain (rarest first)", height=180 + 18 * len(order),
                                yaxis=dict(autorange="reversed"))


# -- Degradation --------------------------------------------------------------------------

def degradation_heatmap(rows: pd.DataFrame, metric: str) -> go.Figure:
    """Class x held-out domain of LODO minus intra; hover gives both with their intervals."""
    if rows.empty:
        return message_figure(f"no degradation figures for {METRIC_NAMES.get(metric, metric)}")
    order = rare_first(rows.groupby("class")["train_prevalence"].mean())
    domains = sorted(rows["domain"].unique())
    grid = rows.set_index(["class", "domain"])
    fields = ["intra", "intra_lo", "intra_hi", "lodo", "lodo_lo", "lodo_hi", "train_prevalence", "test_prevalence"]
    full_index = pd.MultiIndex.from_product([order, domains], names=["class", "domain"])
    cells = grid.reindex(full_index)
    delta = cells["delta"].to_numpy().reshape(len(order), len(domains))
    custom = cells[fields].to_numpy().reshape(len(order), len(domains), len(fields))
    bound = float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 1.0
    name = METRIC_NAMES.get(metric, metric)
    figure = go.Figure(go.Heatmap(
        z=delta, x=domains, y=order, customdata=custom, colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
        colorbar=dict(title=f"Δ {name}"),
        hovertemplate=(
            "<b>%{y}</b>, held-out %{x}<br>"
            "intra %{customdata[0]:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}]<br>"
            "LODO %{customdata[3]:.3f} [%{customdata[4]:.3f}, %{customdata[5]:.3f}]<br>"
            "Δ %{z:+.3f}<br>train prevalence %{customdata[6]:.2%}, test %{customdata[7]:.2%}<extra></extra>"
        ),
    ), layout=_LAYOUT)
    return figure.update_layout(
        title=f"LODO − intra {name} per class and held-out domain (rarest classes at the top)",
        xaxis_title="held-out domain", height=200 + 20 * len(order), yaxis=dict(autorange="reversed"),
    )


def degradation_scatter(rows: pd.DataFrame, metric: str) -> go.Figure:
    if rows.empty:
        return message_figure("no degradation figures")
    figure = go.Figure(layout=_LAYOUT)
    for domain, group in rows.groupby("domain", sort=True):
        figure.add_scatter(
            x=group["train_prevalence"], y=group["delta"], mode="markers", name=domain, text=group["class"],
            customdata=group[["intra", "lodo"]].to_numpy(),
            hovertemplate=("%{text} (held-out %{fullData.name})<br>train prevalence %{x:.2%}<br>"
                           "intra %{customdata[0]:.3f} → LODO %{customdata[1]:.3f} (Δ %{y:+.3f})<extra></extra>"),
        )
    figure.add_hline(y=0, line=dict(color="#888", dash="dot"))
    return figure.update_layout(title=f"Degradation of {METRIC_NAMES.get(metric, metric)} against training prevalence",
                                xaxis=dict(type="log", title="training prevalence", tickformat=".1%"),
                                yaxis_title="LODO − intra", height=420)


def decomposition_figure(row: pd.Series | None) -> go.Figure:
    """The F1 drop beside its three diagnostics: ranking loss (AUROC drop), threshold
    transfer and prevalence shift. They are separate what-ifs (study/degradation.py), not
    shares of one sum, so they are drawn as bars side by side, not as a waterfall."""
    if row is None:
        return message_figure("pick a class and a held-out domain (or click a heatmap cell)")
    parts = [("ranking (AUROC)", row["ranking_part"]), ("threshold transfer", row["threshold_part"]),
             ("prevalence shift", row["prevalence_part"]), ("F1 change", row["delta"])]
    values = [float(v) if pd.notna(v) else 0.0 for _, v in parts]
    figure = go.Figure(go.Bar(
        x=[p for p, _ in parts], y=values, text=[f"{v:+.3f}" if pd.notna(v) else "n/a" for _, v in parts],
        marker_color=["#c62828" if v < 0 else "#2e7d32" for v in values[:-1]] + ["#455a64"],
    ), layout=_LAYOUT)
    return figure.update_layout(
        title=f"{row['class']} held out on {row['domain']}: F1 {row['intra']:.3f} (intra) → {row['lodo']:.3f} (LODO)",
        yaxis_title="change", height=380, showlegend=False,
    )


# -- Ablations ----------------------------------------------------------------------------

def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2 or np.ptp(values) == 0:  # one run, or a deterministic floor: no spread to show
        return mean, mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def ablation_figure(rows: pd.DataFrame, arms: list[str], metric: str) -> go.Figure:
    """Per arm, the test metric per fold (bootstrap interval, seeds averaged) and overall
    (mean over fold x seed runs with a t-interval)."""
    if rows.empty:
        return message_figure(f"no test results for {metric}")
    folds = sorted(rows["fold_id"].unique())
    figure = go.Figure(layout=_LAYOUT)
    for arm in [a for a in arms if a in set(rows["arm"])]:
        runs = rows[rows["arm"] == arm]
        per_fold = runs.groupby("fold_id")[["value", "ci_low", "ci_high"]].mean().reindex(folds)
        mean, low, high = _t_interval(runs["value"].to_numpy())
        values = np.append(per_fold["value"].to_numpy(), mean)
        figure.add_scatter(
            x=folds + ["overall"], y=values, mode="markers", name=arm,
            error_y=dict(type="data", symmetric=False, array=np.append(per_fold["ci_high"] - per_fold["value"], high - mean),
                         arrayminus=np.append(per_fold["value"] - per_fold["ci_low"], mean - low)),
        )
    return figure.update_layout(title=f"Test {metric.replace('_', ' ')} per arm: folds and overall", scattermode="group",
                                yaxis_title=metric.replace("_", " "), height=420)


def ablation_tests_frame(tests: pd.DataFrame) -> pd.DataFrame:
    """The paired-test table as shown: one row per arm, adjusted p first among the p-values."""
    if tests.empty:
        return tests
    shown = tests.sort_values("p_holm")[["arm", "n_pairs", "mean_full", "mean_arm", "mean_diff", "diff_lo",
                                         "diff_hi", "effect_size", "p_holm", "wilcoxon_p", "bootstrap_p"]]
    shown = shown.assign(diff_95=[f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(shown.diff_lo, shown.diff_hi)])
    shown = shown.drop(columns=["diff_lo", "diff_hi"])
    return shown.round({"mean_full": 4, "mean_arm": 4, "mean_diff": 4, "effect_size": 2}).assign(
        **{c: shown[c].map(lambda p: f"{p:.2g}") for c in ("p_holm", "wilcoxon_p", "bootstrap_p")})


def rare_class_effects_figure(rows: pd.DataFrame, metric: str, rare: list[str], reference_arm: str = "full") -> go.Figure:
    """Arm minus the reference arm per rare class, paired on (fold, seed) and averaged."""
    if rows.empty or not rare or reference_arm not in set(rows["arm"]):
        return message_figure(f"no per-class results to compare with '{reference_arm}'")
    rows = rows[rows["class"].isin(rare)]
    wide = rows.pivot_table(index=["fold_id", "seed", "class"], columns="arm", values=metric, aggfunc="mean")
    diffs = wide.drop(columns=[reference_arm]).sub(wide[reference_arm], axis=0).groupby(level="class").mean()
    diffs = diffs.reindex(index=[c for c in rare if c in diffs.index]).T
    bound = float(np.nanmax(np.abs(diffs.to_numpy()))) if diffs.size and np.isfinite(diffs.to_numpy()).any() else 1.0
    figure = go.Figure(go.Heatmap(
        z=diffs.to_numpy(), x=list(diffs.columns), y=list(diffs.index), colorscale="RdBu", zmid=0,
        zmin=-bound, zmax=bound, colorbar=dict(title="Δ"),
        hovertemplate="%{y} on %{x}: %{z:+.3f} vs " + reference_arm + "<extra></extra>",
    ), layout=_LAYOUT)
    return figure.update_layout(title=f"Per-class effect on rare classes ({metric}, arm − {reference_arm}; rarest left)",
                                height=160 + 26 * len(diffs.index))
