"""The Ablations view: each arm against `full`, per held-out domain and across them.

The tests come from the analysis' ablation_tests table (docs/analysis.md): per held-out
domain and across them, the paired difference with its interval (records and seeds; random
effects across domains), the claim it supports and Holm's adjusted p in its declared family
(confirmatory: the primary metric across domains; exploratory: the rest), to which the page
applies the study's decision rule and says which. The baseline and the prevalence floor are
shown apart, as references: in the family like every arm, but what the others stand against.
Algorithm arms (`algorithm-<kind>`: another training algorithm, against `full` as the ERM
configuration) are shown apart from the component arms, in their own families, with the
degradation parts of each against ERM's (the analysis' algorithm_parts table): which part
of the F1 drop, prevalence, threshold or ranking, the algorithm reduces.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import dash_bootstrap_components as dbc
import pandas as pd
import plotly.graph_objects as go
from dash import html

from heartbeatai.analysis.decisions import decide
from heartbeatai.arms import algorithm_of, is_algorithm, is_reference
from heartbeatai.dashboard import figures, figures_ablations
from heartbeatai.dashboard.views.base import ALL_SEEDS, ViewBase, arm_order, per_store_state, table
from heartbeatai.metric_names import MACRO_AUPRC_MIN_POSITIVES
from heartbeatai.results import schema

# Rare, for the per-class ablation effects: below 2 % of the training set (at most 12 classes).
RARE_PREVALENCE = 0.02
MAX_RARE = 12
# The analysis' default (docs/analysis.md); a study sets its own as analysis.decision_probability.
DEFAULT_DECISION_PROBABILITY = 0.95
NONE = "—"
OUTCOMES = ("better", "equivalent", "worse")


class AblationsView(NamedTuple):
    status: list
    arms: go.Figure
    tests: Any
    rare_effects: go.Figure


class DecisionRule(NamedTuple):
    threshold: float
    source: str

    def sentence(self) -> str:
        alpha = 1 - self.threshold
        return (f"Decision rule: each comparison's best-supported claim (better or worse beyond the ROPE, or "
                f"equivalent within it) is decided where its Holm-adjusted p in its family is at most {alpha:.3g} "
                f"(decision probability {self.threshold:g}: {self.source}); where the bootstrap's Monte Carlo "
                "error moves that p across the threshold, \"at the threshold\"; otherwise undecided.")


class AblationViews(ViewBase):
    @per_store_state
    def ablations(self, study: str | None, protocol: str, arms: list[str] | None, seed, metric: str,
                  domain: str | None = None) -> AblationsView:
        """`domain`: the held-out domain (fold id) of the per-class heat map; None: across them."""
        fold_metric = f"macro_{metric}"
        results = self.store.read(study, "fold_metrics", filters={
            "protocol": protocol, "split": "test", "label_set": "noisy", "metric": fold_metric, "selection": "val"})
        classes = self.store.read(study, "class_metrics", filters={
            "protocol": protocol, "split": "test", "label_set": "noisy", "selection": "val"})
        if seed not in (None, ALL_SEEDS):
            # The prevalence floor has one seed: keep it beside any seed.
            results = results[(results["seed"] == int(seed)) | (results["arm"] == schema.PREVALENCE_ARM)]
            classes = classes[classes["seed"] == int(seed)]
        chosen = arm_order(arms or results["arm"].unique())
        results, classes = results[results["arm"].isin(chosen)], classes[classes["arm"].isin(chosen + ["full"])]
        tests = self.store.read(study, "ablation_tests", filters={"protocol": protocol, "metric": fold_metric})
        # The per-class decisions pool every seed: with one seed chosen the heat map is descriptive.
        class_tests = (self.store.read(study, "class_tests", filters={"protocol": protocol, "metric": metric})
                       if seed in (None, ALL_SEEDS) else None)
        per_class = classes[classes["arm"] != schema.PREVALENCE_ARM]
        if domain:
            per_class = per_class[per_class["fold_id"] == domain]
        if class_tests is not None:
            class_tests = (class_tests[class_tests["fold_id"] == domain] if domain
                           else schema.pooled_rows(class_tests))
        tests = tests[tests["arm"].isin(chosen)] if arms else tests
        algorithm_parts = self.store.read(study, "algorithm_parts", filters={"label_set": "noisy"})
        if arms and len(algorithm_parts):
            algorithm_parts = algorithm_parts[algorithm_parts["arm"].isin(chosen)]
        rule = self.decision_rule(study)
        disagreeing = _disagreements(tests, rule)
        # algorithm_parts is written only for a study that compares algorithms: another study
        # would otherwise wait forever, by the page's word, for a stage it does not have.
        compares_algorithms = any(algorithm_of(str(arm)) for arm in results["arm"].unique())
        status = self.alerts(study, ("fold_metrics", "class_metrics", "ablation_tests", "class_tests")
                             + (("algorithm_parts",) if compares_algorithms else ()))
        if disagreeing:
            status.append(dbc.Alert(
                f"{len(disagreeing)} stored decision(s) ({', '.join(disagreeing)}) differ from the rule at "
                f"{rule.threshold:g}: the table was analysed with another threshold; rerun `heartbeatai study "
                "analyse` to store this one's.", color="warning", className="py-2 decision-alert"))
        return AblationsView(
            status=status,
            arms=figures_ablations.difference_figure(tests, chosen, fold_metric),
            tests=_tests_panel(tests, rule, fold_metric, protocol, algorithm_parts),
            rare_effects=figures_ablations.rare_class_effects_figure(
                per_class, metric, _rare_classes(classes), tests=class_tests, domain=domain),
        )

    @per_store_state
    def rare_domains(self, study: str | None, protocol: str, current: str | None = None) -> tuple[list, str | None]:
        """The held-out domains the per-class heat map can be narrowed to; the `current` one is
        kept while the study has it (a refresh), else back to across them (None)."""
        folds = self.store.read(study, "class_metrics", columns=["fold_id"], filters={
            "protocol": protocol, "split": "test", "selection": "val"})["fold_id"]
        folds = sorted(folds.dropna().unique())
        return [{"label": fold, "value": fold} for fold in folds], (current if current in folds else None)

    def decision_rule(self, study: str) -> DecisionRule:
        """The posterior probability that decides: the study config's, else the analysis' default."""
        value = self.store.analysis_settings(study).get("decision_probability")
        if value is None:
            return DecisionRule(DEFAULT_DECISION_PROBABILITY,
                                "the default (the study config sets no analysis.decision_probability)")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.5 < value <= 1:
            return DecisionRule(float(value), "the study config's analysis.decision_probability")
        return DecisionRule(DEFAULT_DECISION_PROBABILITY,
                            f"the default (the study config's analysis.decision_probability {value!r} is not a "
                            "probability above 0.5)")


def _disagreements(tests: pd.DataFrame, rule: DecisionRule) -> list[str]:
    across = tests[tests["scope"] == "across"]
    return [row["arm"] for _, row in across.iterrows()
            if isinstance(row["decision"], str) and row["decision"] != decide(row, rule.threshold)]


def _p(value) -> str:
    return f"{value:.3g}" if value is not None and pd.notna(value) else NONE


def _confidence(row, outcome: str) -> str:
    return f"{row[f'p_{outcome}']:.3f}" if pd.notna(row[f"p_{outcome}"]) else NONE


def _claim(row) -> str:
    claim = row.get("claim")
    if not isinstance(claim, str):
        return NONE
    if claim not in ("better", "worse", "equivalent"):
        return claim
    band = ""
    if pd.notna(row.get("p_holm_low")) and pd.notna(row.get("p_holm_high")):
        band = f" [{row['p_holm_low']:.3g}, {row['p_holm_high']:.3g}]"
    return f"{claim}: Holm p {_p(row['p_holm'])}{band}"


def _signs(row) -> str:
    if pd.isna(row["n_folds"]):
        return NONE
    return f"{int(row['n_better'])} better, {int(row['n_worse'])} worse of {int(row['n_folds'])}"


def _difference(row) -> str:
    if pd.isna(row["diff"]):
        return NONE
    if pd.isna(row["diff_lo"]) or pd.isna(row["diff_hi"]):
        return f"{row['diff']:+.4f}"
    return f"{row['diff']:+.4f} [{row['diff_lo']:+.4f}, {row['diff_hi']:+.4f}]"


def _interval_kind(row) -> str:
    if figures.is_reliable(row["conditional"]):
        return "conditional on the trained model (one seed)"
    return "records and seeds" if pd.notna(row["conditional"]) else NONE


def _decision(row, rule: DecisionRule) -> str:
    applied = decide(row, rule.threshold)
    stored = row["decision"]
    return applied if not isinstance(stored, str) or stored == applied else f"{applied} (table: {stored})"


def _ordered(rows: pd.DataFrame) -> pd.DataFrame:
    rank = {arm: i for i, arm in enumerate(arm_order(rows["arm"]))}
    return rows.assign(_rank=rows["arm"].map(rank)).sort_values(["_rank", "fold_id"]).drop(columns="_rank")


def _across_frame(rows: pd.DataFrame, rule: DecisionRule) -> pd.DataFrame:
    shown = pd.DataFrame({
        "arm": rows["arm"],
        "held-out domains": [_signs(r) for _, r in rows.iterrows()],
        "difference [95% interval]": [_difference(r) for _, r in rows.iterrows()],
        "family": rows["family"].fillna(NONE) if "family" in rows else NONE,
        **{f"P({o})": [_confidence(r, o) for _, r in rows.iterrows()] for o in OUTCOMES},
        "ROPE": [f"±{r:g}" if pd.notna(r) else NONE for r in rows["rope"]],
        "claim, Holm p [Monte Carlo band]": [_claim(r) for _, r in rows.iterrows()],
        "decision": [_decision(r, rule) for _, r in rows.iterrows()],
    })
    return shown


def _fold_frame(rows: pd.DataFrame, rule: DecisionRule) -> pd.DataFrame:
    return pd.DataFrame({
        "arm": rows["arm"], "held-out domain": rows["fold_id"],
        "seeds": [str(int(n)) if pd.notna(n) else NONE for n in rows["n_seeds"]],
        "difference [95% interval]": [_difference(r) for _, r in rows.iterrows()],
        "interval": [_interval_kind(r) for _, r in rows.iterrows()],
        "p": [_p(p) for p in rows["p_value"]], "Holm p": [_p(p) for p in rows["p_holm"]],
        "claim, Holm p [Monte Carlo band]": [_claim(r) for _, r in rows.iterrows()],
        "decision": [_decision(r, rule) for _, r in rows.iterrows()],
    })


def _reference_frame(rows: pd.DataFrame, rule: DecisionRule) -> pd.DataFrame:
    records = []
    for _, row in rows.iterrows():
        across = row["scope"] == "across"
        records.append({
            "arm": row["arm"],
            "held-out domain": f"across ({_signs(row)})" if across else row["fold_id"],
            "difference": f"{row['diff']:+.4f}" if across and pd.notna(row["diff"]) else _difference(row),
            "interval": NONE if across else _interval_kind(row),
            "P(better) / P(equivalent) / P(worse)": " / ".join(_confidence(row, o) for o in OUTCOMES) if across else NONE,
            "decision": _decision(row, rule),
        })
    return pd.DataFrame(records)


def _tests_panel(tests: pd.DataFrame, rule: DecisionRule, metric: str, protocol: str,
                 algorithm_parts: pd.DataFrame | None = None) -> html.Div:
    if tests.empty:
        return html.Div(html.P(f"No paired tests for {metric} under {protocol} yet.", className="text-muted"))
    tests = _ordered(tests)
    reference = tests["reference"].fillna(False).astype(bool) | tests["arm"].map(is_reference)
    algorithm = tests["arm"].map(is_algorithm)
    family, references, algorithms = tests[~reference & ~algorithm], tests[reference], tests[algorithm & ~reference]
    across, folds = family[family["scope"] == "across"], family[family["scope"] == "fold"]
    ropes = sorted(set(tests["rope"].dropna()))
    methods = sorted(set(tests["method"].dropna()))
    parts = [
        html.P(rule.sentence(), id="ablation-rule", className="fw-bold mb-1"),
        html.P("Differences are arm − full, oriented so that positive means the arm is better (the sign is flipped "
               "for the Brier score, where lower is better)." + (
                   f" Region of practical equivalence (ROPE): ±{', ±'.join(f'{r:g}' for r in ropes)}." if ropes
                   else "") + (
                   f" Macro AUPRC averages each domain's classes with at least {MACRO_AUPRC_MIN_POSITIVES} test "
                   "positives (fold_metrics' classes_used): below that, average precision is biased upward."
                   if metric == "macro_auprc" else ""), className="small mb-1"),
        html.P("P(better) / P(equivalent) / P(worse) read the difference's t confidence distribution (a posterior "
               "under a flat prior); a decision needs the claim's Holm-adjusted p, which accounts for every "
               "comparison of its family.", className="small mb-1"),
    ]
    if len(family) or not len(algorithms):  # a zoo of algorithms alone has no component arm to show
        parts += _component_section(across, folds, rule)
    if len(references):
        parts += [
            html.H6("References", className="mt-3"),
            html.P("The plain-ResNet baseline and the prevalence floor (the training prevalence as the score) are what "
                   "the arms stand against, not ablations: shown apart, decided in their families like every arm.",
                   className="small mb-1"),
            table(_reference_frame(references, rule), "ablation-reference-table"),
        ]
    if len(algorithms):
        parts += _algorithm_section(algorithms, rule, protocol, algorithm_parts)
    if methods:
        parts.append(html.P("Methods: " + "; ".join(methods) + ".", className="small text-muted mt-1"))
    return html.Div(parts, id="ablation-tests-panel")


def _component_section(across: pd.DataFrame, folds: pd.DataFrame, rule: DecisionRule) -> list:
    return [
        html.H6("Across held-out domains", className="mt-3"),
        table(_across_frame(across, rule), "ablation-across-table") if len(across) else html.P(
            "No across-domain rows yet.", className="text-muted"),
        html.H6("Per held-out domain", className="mt-3"),
        html.P("Per domain, the interval combines the records' bootstrap variance and the seeds' variance (t with "
               "Satterthwaite df); its claim is in the exploratory family. With one arm seed the interval is "
               "conditional on the trained model. An arm identical to full on a domain (the same resolved "
               "configuration) is marked and is no comparison.", className="small mb-1"),
        table(_fold_frame(folds, rule), "ablation-tests-table") if len(folds) else html.P(
            "No per-domain rows yet.", className="text-muted"),
    ]


def _algorithm_section(tests: pd.DataFrame, rule: DecisionRule, protocol: str,
                       algorithm_parts: pd.DataFrame | None) -> list:
    """Each algorithm against ERM (`full`), across and per held-out domain, then its degradation parts."""
    across, folds = tests[tests["scope"] == "across"], tests[tests["scope"] == "fold"]
    named = lambda frame: frame.assign(arm=frame["arm"].map(algorithm_of)).rename(  # noqa: E731
        columns={"arm": "algorithm"})
    section = [
        html.H5("Training algorithms against ERM", className="mt-4"),
        html.P("Each algorithm arm trains another algorithm than full, the ERM configuration, after its own search "
               "on training-domain validation with full's budget (docs/algorithms.md). Differences are algorithm − "
               "ERM, positive = the algorithm is better; Holm runs over the algorithms' own families (confirmatory: "
               "the primary metric across domains under LODO), apart from the component arms'.",
               className="small mb-1"),
        html.H6("Across held-out domains", className="mt-2"),
        table(named(_across_frame(across, rule)), "algorithm-across-table") if len(across) else html.P(
            "No across-domain rows yet.", className="text-muted"),
        html.H6("Per held-out domain", className="mt-3"),
        table(named(_fold_frame(folds, rule)), "algorithm-tests-table") if len(folds) else html.P(
            "No per-domain rows yet.", className="text-muted"),
    ]
    if protocol == "lodo":
        section += _algorithm_parts_section(algorithm_parts)
    return section


def _algorithm_parts_section(parts: pd.DataFrame | None) -> list:
    heading = html.H6("Which part of the drop each algorithm reduces, against ERM", className="mt-3")
    if parts is None or parts.empty:
        return [heading, html.P("No algorithm_parts rows yet (`heartbeatai study analyse` writes them).",
                                className="text-muted")]
    records = []
    for (arm, domain), own in parts.groupby(["arm", "domain"], sort=True):
        rare = own[own["train_prevalence"] < RARE_PREVALENCE]
        for label, rows in (("all", own), ("rare", rare)):
            if rows.empty:
                continue
            records.append({"algorithm": algorithm_of(arm), "held-out domain": domain,
                            "classes": f"{label} ({len(rows)})",
                            **{name: f"{rows[name].mean():+.4f}" for name in ("total", *schema.DEGRADATION_PARTS)}})
    return [
        heading,
        html.P("The degradation split of the algorithm's LODO model against ERM's on the same test records and "
               "seeds, mean over the classes present (rare: below 2% training prevalence), in F1 units: total = "
               "the algorithm's F1 minus ERM's = prevalence + threshold + ranking; a positive part is a loss the "
               "algorithm avoids there. The means are descriptive: the intervals are per class, below.",
               className="small mb-1"),
        table(pd.DataFrame(records), "algorithm-parts-table"),
        *_rare_class_parts(parts),
    ]


def _rare_class_parts(parts: pd.DataFrame) -> list:
    """Per rare class, each part with its paired-bootstrap interval (records resampled, the trained
    models fixed), rarest first; a class with too few test positives shows its count instead."""
    rare = parts[parts["train_prevalence"] < RARE_PREVALENCE]
    if rare.empty:
        return []
    rare = rare.sort_values(["train_prevalence", "class", "arm", "domain"], kind="stable")
    frame = pd.DataFrame({
        "class": rare["class"], "algorithm": rare["arm"].map(algorithm_of), "held-out domain": rare["domain"],
        "test positives": rare["n_positives"],
        **{name: [figures.interval_text(r[name], r[f"{name}_lo"], r[f"{name}_hi"], r["interval_reliable"],
                                        r["n_positives"], fmt="+.3f") for _, r in rare.iterrows()]
           for name in ("total", *schema.DEGRADATION_PARTS)},
    })
    return [html.P("Rare classes, each with its interval, conditional on these trained models (docs/analysis.md):",
                   className="small mt-2 mb-1"),
            table(frame, "algorithm-rare-parts-table")]


def _rare_classes(classes: pd.DataFrame) -> list[str]:
    if classes.empty:
        return []
    prevalence = classes.groupby("class")["train_prevalence"].mean().dropna()
    rare = [c for c in figures.rare_first(prevalence) if prevalence[c] < RARE_PREVALENCE]
    return rare[:MAX_RARE] or figures.rare_first(prevalence)[: MAX_RARE // 2]
