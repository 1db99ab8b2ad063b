"""The report's figures: matplotlib (renders on a headless node), one style, each with its data.

A builder returns a `ReportFigure`: the matplotlib figure and `data`, exactly the numbers it
draws, which build.py writes as CSV beside the PDF (vector) and the 300-dpi PNG. The data
come from the tables' own builders (tables.py), so a figure and its table cannot disagree.
Colours: the Okabe-Ito palette (colour-blind safe); diverging maps: matplotlib's RdBu.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # no display on a cluster node; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from heartbeatai import arms as arm_registry  # noqa: E402
from heartbeatai.metric_names import FOLD_METRICS  # noqa: E402
from heartbeatai.protocols import LODO  # noqa: E402
from heartbeatai.report import tables  # noqa: E402
from heartbeatai.report.cells import finite  # noqa: E402
from heartbeatai.results import schema  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
GREY = "#9e9e9e"
STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO), "pdf.fonttype": 42, "ps.fonttype": 42,
}
# Nemenyi's critical difference and a signed-rank test across domains need this many domains
# before a difference between two arms can be significant at 0.05 (2 / 2^k < 0.05 from k = 6).
MIN_DOMAINS_FOR_RANK_TEST = 6
ALPHA = 0.05


@dataclass
class ReportFigure:
    key: str
    title: str
    caption: str
    figure: plt.Figure
    data: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _figure(width: float, height: float) -> tuple[plt.Figure, plt.Axes]:
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    return figure, axes


def primary_metric(inputs: tables.ReportInputs) -> str:
    """The confirmatory family's metric (the selection metric's test counterpart)."""
    tests = inputs.table("ablation_tests")
    confirmatory = tests[tests["family"].isin(["confirmatory", "algorithms: confirmatory"])]
    return str(confirmatory["metric"].iloc[0]) if len(confirmatory) else "macro_auroc"


# -- the forest plot -------------------------------------------------------------------------

def forest(inputs: tables.ReportInputs) -> ReportFigure:
    metric = primary_metric(inputs)
    tests = inputs.table("ablation_tests")
    rows = tests[(tests["metric"] == metric) & (tests["protocol"] == LODO)]
    if rows.empty:
        raise LookupError(f"no LODO comparisons on {metric}")
    arms = tables.ordered_arms(rows["arm"])
    data = []
    for arm in arms:
        mine = rows[rows["arm"] == arm]
        for _, row in mine[mine["scope"] == "fold"].sort_values("fold_id").iterrows():
            data.append({"arm": arm, "held_out": tables.domain_of(row["fold_id"]), "scope": "fold",
                         "diff": row["diff"], "diff_lo": row["diff_lo"], "diff_hi": row["diff_hi"],
                         "identical": bool(row["identical"]) if pd.notna(row["identical"]) else False,
                         "decision": row["decision"], "rope": row["rope"]})
        for _, row in mine[mine["scope"] == "across"].iterrows():
            data.append({"arm": arm, "held_out": tables.ALL_DOMAINS, "scope": "across", "diff": row["diff"],
                         "diff_lo": row["diff_lo"], "diff_hi": row["diff_hi"], "identical": False,
                         "decision": row["decision"], "rope": row["rope"]})
    data = pd.DataFrame(data)
    figure, axes = _figure(5.5, 0.22 * len(data) + 1.0)
    y = np.arange(len(data))[::-1]
    rope = float(data["rope"].dropna().iloc[0]) if data["rope"].notna().any() else 0.0
    if rope > 0:
        axes.axvspan(-rope, rope, color="#eeeeee", zorder=0, label=f"ROPE ±{rope:g}")
    axes.axvline(0, color=GREY, lw=0.8)
    for yi, (_, row) in zip(y, data.iterrows()):
        pooled = row["scope"] == "across"
        colour = OKABE_ITO[0] if pooled else "#555555"
        if finite(row["diff_lo"]):
            axes.plot([row["diff_lo"], row["diff_hi"]], [yi, yi], color=colour, lw=1.6 if pooled else 1.0)
        axes.plot(row["diff"], yi, marker="D" if pooled else "o", color=colour, ms=5 if pooled else 3.5,
                  mfc=colour if pooled else "white")
    axes.set_yticks(y, [f"{a}: {h}" for a, h in zip(data["arm"], data["held_out"])])
    axes.set_xlabel(f"{tables.metric_label(metric)}: arm minus full (positive = arm better)")
    axes.set_title("Arm minus full: per held-out domain and pooled (95% intervals)")
    if rope > 0:
        axes.legend(loc="lower right", frameon=False)
    return ReportFigure("f1_forest", "Forest plot of paired differences",
                        "Each arm against full on the primary metric, per held-out domain (circles: records and "
                        "seeds) and pooled across domains (diamonds: random effects, Knapp-Hartung).", figure, data)


# -- the class x domain heatmap ------------------------------------------------------------------

def class_domain_heatmap(inputs: tables.ReportInputs) -> ReportFigure:
    rows = tables.degradation_data(inputs)
    data = rows[["class", "domain", "n_positives", "interval_reliable", "train_prevalence_lodo",
                 "total", "total_lo", "total_hi"]].copy()
    classes = list(dict.fromkeys(data["class"]))  # rarest first, as T5 orders them
    domains = sorted(data["domain"].unique())
    grid = np.full((len(classes), len(domains)), np.nan)
    reliable = np.zeros_like(grid, dtype=bool)
    for _, row in data.iterrows():
        i, j = classes.index(row["class"]), domains.index(row["domain"])
        grid[i, j], reliable[i, j] = row["total"], bool(row["interval_reliable"])
    figure, axes = _figure(1.2 * len(domains) + 2.2, 0.22 * len(classes) + 1.2)
    shown = np.where(reliable, np.abs(grid), np.nan)
    limit = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
    # pcolormesh, not imshow: quads stay vector in the PDF where imshow embeds a raster image.
    mesh_x, mesh_y = np.arange(len(domains) + 1) - 0.5, np.arange(len(classes) + 1) - 0.5
    image = axes.pcolormesh(mesh_x, mesh_y, np.ma.masked_invalid(np.where(reliable, grid, np.nan)), cmap="RdBu",
                            vmin=-limit, vmax=limit)
    axes.pcolormesh(mesh_x, mesh_y, np.ma.masked_invalid(np.where(~reliable & np.isfinite(grid), 1.0, np.nan)),
                    cmap=matplotlib.colors.ListedColormap(["#e0e0e0"]))
    axes.invert_yaxis()  # rarest first, at the top
    for i in range(len(classes)):
        for j in range(len(domains)):
            if np.isfinite(grid[i, j]):
                dark = reliable[i, j] and abs(grid[i, j]) > 0.6 * limit
                axes.text(j, i, f"{grid[i, j]:+.2f}", ha="center", va="center", fontsize=6,
                          color="white" if dark else "#222222")
    axes.set_xticks(range(len(domains)), domains)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_title("F1 change, LODO minus reference (grey: too few positives for an interval)")
    colorbar = figure.colorbar(image, ax=axes, shrink=0.6, label="ΔF1")
    colorbar.solids.set_rasterized(False)  # matplotlib rasterises a colour bar's gradient: keep the PDF vector
    return ReportFigure("f2_class_domain_heatmap", "Class x domain F1 change, rarest first",
                        "LODO minus the in-distribution reference per class and held-out domain; cells whose "
                        "interval may not be read are grey with their value.", figure, data)


# -- the stacked degradation parts --------------------------------------------------------------

def degradation_parts(inputs: tables.ReportInputs) -> ReportFigure:
    rows = tables.degradation_data(inputs)
    reliable = rows[rows["interval_reliable"].fillna(False).astype(bool)]
    if reliable.empty:
        raise LookupError("no degradation cell has enough test positives for its parts to be read")
    parts = list(schema.DEGRADATION_PARTS)
    order = list(dict.fromkeys(reliable["class"]))
    data = (reliable.groupby("class")[[schema.DEGRADATION_TOTAL, *parts]].mean().reindex(order).reset_index())
    data["cells"] = data["class"].map(reliable.groupby("class").size())
    figure, axes = _figure(max(4.0, 0.35 * len(data) + 1.5), 3.0)
    x = np.arange(len(data))
    positive, negative = np.zeros(len(data)), np.zeros(len(data))
    for colour, part in zip(OKABE_ITO, parts):
        values = data[part].to_numpy()
        bottom = np.where(values >= 0, positive, negative)
        axes.bar(x, values, bottom=bottom, color=colour, width=0.7, label=part)
        positive += np.where(values >= 0, values, 0)
        negative += np.where(values < 0, values, 0)
    axes.plot(x, data[schema.DEGRADATION_TOTAL], "k_", ms=10, mew=2, label="total")
    axes.axhline(0, color=GREY, lw=0.8)
    axes.set_xticks(x, data["class"], rotation=60, ha="right")
    axes.set_ylabel("F1 change, LODO minus reference")
    axes.set_title("Degradation split per class (mean over held-out domains), rarest first")
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ReportFigure("f3_degradation_parts", "Stacked degradation parts",
                        "Per class, the prevalence, threshold and ranking parts of the F1 change (they sum to the "
                        "total, the black mark), mean over the cells with enough test positives.", figure, data)


# -- the rare-against-common contrast ------------------------------------------------------------

def rarity_contrast(inputs: tables.ReportInputs) -> ReportFigure:
    summary = inputs.table("rarity_contrast")
    summary = summary[summary["label_set"] == inputs.label_set]
    if summary.empty:
        raise LookupError("the rarity_contrast table is empty")
    row = summary.iloc[0]
    cells = tables.degradation_data(inputs)
    cells = cells[cells["n_positives"] >= row["min_positives"]]
    data = cells[["class", "domain", "n_positives", "train_prevalence_lodo", "f1_reference", "f1_lodo"]].copy()
    data["drop"] = data["f1_reference"] - data["f1_lodo"]
    data["group"] = np.where(data["train_prevalence_lodo"] <= row["rare_prevalence_max"], "rare",
                             np.where(data["train_prevalence_lodo"] >= row["common_prevalence_min"], "common", "middle"))
    figure, axes = _figure(4.5, 3.0)
    colours = {"rare": OKABE_ITO[3], "middle": GREY, "common": OKABE_ITO[0]}
    for group, part in data.groupby("group"):
        axes.scatter(part["train_prevalence_lodo"], part["drop"], s=14, color=colours[group], label=group)
    axes.set_xscale("log")
    axes.axhline(0, color=GREY, lw=0.8)
    axes.set_xlabel("training prevalence under LODO (log)")
    axes.set_ylabel("F1 drop, reference minus LODO")
    axes.set_title(f"Rare minus common drop: {row['contrast']:+.3f} [{row['contrast_lo']:+.3f}, {row['contrast_hi']:+.3f}]")
    axes.legend(frameon=False)
    return ReportFigure("f4_rarity_contrast", "Rare against common classes",
                        "Each class x domain cell's F1 drop against its training prevalence; the title gives the "
                        "rarest third's mean drop minus the commonest third's with its interval (T5b).", figure, data)


# -- reliability diagrams -------------------------------------------------------------------------

def reliability(inputs: tables.ReportInputs) -> ReportFigure:
    runs = tables.calibration_runs(inputs)
    edges = np.linspace(0, 1, tables.ECE_BINS + 1)
    rows = []
    for (protocol, domain), seeds in runs.items():
        q = np.concatenate([s[0].ravel() for s in seeds])
        y = np.concatenate([s[1].ravel() for s in seeds])
        index = np.minimum((q * tables.ECE_BINS).astype(int), tables.ECE_BINS - 1)
        for b in range(tables.ECE_BINS):
            inside = index == b
            if inside.any():
                rows.append({"domain": domain, "protocol": protocol, "bin_low": edges[b], "bin_high": edges[b + 1],
                             "n": int(inside.sum()), "mean_predicted": float(q[inside].mean()),
                             "observed": float(y[inside].mean())})
    data = pd.DataFrame(rows)
    domains = sorted(data["domain"].unique())
    with plt.rc_context(STYLE):
        figure, grid = plt.subplots(1, len(domains), figsize=(1.9 * len(domains) + 0.5, 2.3), layout="constrained",
                                    sharey=True, squeeze=False)
    for axes, domain in zip(grid[0], domains):
        axes.plot([0, 1], [0, 1], color=GREY, lw=0.8)
        for colour, (protocol, part) in zip(OKABE_ITO, data[data["domain"] == domain].groupby("protocol")):
            axes.plot(part["mean_predicted"], part["observed"], marker="o", ms=3, color=colour, label=protocol)
        axes.set_title(domain)
        axes.set_xlabel("predicted")
    grid[0][0].set_ylabel("observed frequency")
    grid[0][-1].legend(frameon=False, loc="upper left")
    return ReportFigure("f5_reliability", "Reliability diagrams per held-out domain",
                        f"Observed frequency against mean predicted probability in {tables.ECE_BINS} equal-width bins, "
                        "every class and seed of arm full pooled; the diagonal is perfect calibration.", figure, data)


# -- learning curves ------------------------------------------------------------------------------

def learning_curves(inputs: tables.ReportInputs) -> ReportFigure:
    epochs = inputs.table("epochs")
    chosen = tables.selected_trials(inputs).rename("trial_id").rename_axis("fold_id").reset_index()
    data = epochs.merge(chosen, on=["fold_id", "trial_id"])
    data = data[data["arm"] == arm_registry.SEARCH]
    if data.empty:
        raise LookupError("no epochs of the selected trials")
    trials = inputs.table("trials")
    metric = str(trials["selection_metric"].dropna().iloc[0]) if trials["selection_metric"].notna().any() else "val_macro_auroc"
    keep = ["protocol", "fold_id", "trial_id", "epoch", "train_loss", "val_loss", metric]
    data = data[list(dict.fromkeys(keep))].sort_values(["fold_id", "epoch"]).reset_index(drop=True)
    with plt.rc_context(STYLE):
        figure, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.6), layout="constrained")
    for colour, (fold_id, curve) in zip(OKABE_ITO * 4, data.groupby("fold_id")):
        left.plot(curve["epoch"], curve["train_loss"], color=colour, lw=1, label=fold_id)
        left.plot(curve["epoch"], curve["val_loss"], color=colour, lw=1, ls="--")
        right.plot(curve["epoch"], curve[metric], color=colour, lw=1, marker="o", ms=2.5, label=fold_id)
    left.set_xlabel("epoch")
    left.set_ylabel("loss (solid: train, dashed: validation)")
    right.set_xlabel("epoch")
    right.set_ylabel(metric)
    right.legend(frameon=False, fontsize=6)
    figure.suptitle("Learning curves of each fold's selected trial", fontsize=9)
    return ReportFigure("f6_learning_curves", "Learning curves of the selected trials",
                        "Training and validation loss, and the selection metric on the training domains' "
                        "validation records, per epoch of each fold's selected search trial.", figure, data)


# -- average ranks (critical difference) ------------------------------------------------------------

def nemenyi_critical_difference(n_arms: int, n_domains: int, alpha: float = ALPHA) -> float:
    """Demsar (2006): q_alpha * sqrt(k (k + 1) / (6 N)), q the studentized range over sqrt 2."""
    q = stats.studentized_range.ppf(1 - alpha, n_arms, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(n_arms * (n_arms + 1) / (6 * n_domains)))


def average_ranks(inputs: tables.ReportInputs) -> ReportFigure:
    metric = primary_metric(inputs)
    main = tables.main_results_data(inputs)
    main = main[(main["protocol"] == LODO) & (main["domain"] != tables.ALL_DOMAINS)]
    wide = main.pivot_table(index="domain", columns="arm", values=metric).dropna(axis=1)
    if wide.shape[1] < 2 or wide.shape[0] < 2:
        raise LookupError("average ranks need at least 2 arms on at least 2 held-out domains")
    sign = -1 if FOLD_METRICS[metric].mode == "max" else 1
    ranks = wide.mul(sign).rank(axis=1, method="average").mean(axis=0).sort_values()
    n_arms, n_domains = wide.shape[1], wide.shape[0]
    cd = nemenyi_critical_difference(n_arms, n_domains)
    descriptive = n_domains < MIN_DOMAINS_FOR_RANK_TEST or cd >= n_arms - 1
    data = pd.DataFrame({"arm": ranks.index, "average_rank": ranks.to_numpy(), "n_domains": n_domains,
                         "critical_difference": cd, "descriptive": descriptive})
    figure, axes = _figure(5.5, 0.25 * n_arms + 1.2)
    y = np.arange(n_arms)[::-1]
    axes.scatter(ranks.to_numpy(), y, color=OKABE_ITO[0], zorder=3)
    axes.set_yticks(y, ranks.index)
    axes.set_xlim(0.8, n_arms + 0.2)
    axes.set_xlabel(f"average rank over {n_domains} held-out domains on {tables.metric_label(metric)} (1 = best)")
    axes.plot([1, 1 + cd], [n_arms - 0.4] * 2, color=OKABE_ITO[3], lw=2)
    axes.text(1, n_arms - 0.2, f"Nemenyi CD at {ALPHA:g}: {cd:.2f} ranks", fontsize=7, color=OKABE_ITO[3])
    verdict = (f"DESCRIPTIVE ONLY: with {n_domains} domains no rank test can separate two arms "
               f"(CD {cd:.2f} of at most {n_arms - 1} ranks; a signed-rank test's smallest p is "
               f"{tables.min_rank_test_p(n_domains):.3g})") if descriptive else "Nemenyi test at 0.05"
    axes.set_title(verdict, fontsize=7, loc="left", wrap=True)
    axes.set_ylim(-0.6, n_arms + 0.3)
    return ReportFigure("f7_average_ranks", "Average ranks of the arms",
                        "Each arm's rank per held-out domain (seed mean of the primary metric), averaged; the bar "
                        "is Nemenyi's critical difference. Descriptive where the domains are too few for a test.",
                        figure, data)


FIGURES: dict[str, Callable[[tables.ReportInputs], ReportFigure]] = {
    "f1_forest": forest,
    "f2_class_domain_heatmap": class_domain_heatmap,
    "f3_degradation_parts": degradation_parts,
    "f4_rarity_contrast": rarity_contrast,
    "f5_reliability": reliability,
    "f6_learning_curves": learning_curves,
    "f7_average_ranks": average_ranks,
}
