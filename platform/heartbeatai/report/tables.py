"""The report's tables T1-T7, each built from the results store alone (docs/report.md).

A builder takes the study's `ReportInputs` and returns a `ReportTable`: `data` holds the
numbers (what the CSV keeps: a figure, its low and high), `shown` the same rows as a reader
sees them (what LaTeX, Markdown and HTML print: ``0.812 [0.790, 0.833]``, or why a cell has
no interval). Tables derive their arms, metrics, parts and protocols from the registries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import yaml

from heartbeatai import arms as arm_registry
from heartbeatai.analysis.prior_shift import expected_calibration_error
from heartbeatai.metric_names import CLASS_METRICS, FOLD_METRICS, metric_mode
from heartbeatai.protocols import LODO, REFERENCE, INTRA, parse_fold_id
from heartbeatai.report.cells import (
    LEVEL, NO_VALUE as NO_VALUE_TEXT, estimate_interval, finite, interval_cell, number_cell, p_cell, pooled_across,
    seed_pooled,
)
from heartbeatai.results import schema
from heartbeatai.results.notebook import StudyResults

ALL_DOMAINS = "all domains"
# T2's figures: the threshold-free ranking metrics first, then the thresholded ones.
MAIN_METRICS = ("macro_auroc", "macro_f1", "macro_auprc", "challenge_score")
# Calibration: equal-width bins of the classwise expected calibration error (Kull et al. 2019).
ECE_BINS = 10
ECE_BOOTSTRAP = 200
BOOTSTRAP_SEED = 0
# The trained-model selection every arm is tested under (the search's own trials are T7's).
SELECTION = "val"


@dataclass
class ReportTable:
    key: str  # file stem: t2_main_results
    title: str
    caption: str
    data: pd.DataFrame  # numbers: the CSV
    shown: pd.DataFrame  # what a reader sees: LaTeX, Markdown, HTML
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportInputs:
    """What every builder reads: the study and the label set, each table read once."""

    study: StudyResults
    label_set: str = "noisy"
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            self._cache[name] = self.study.table(name)
        return self._cache[name]

    def config(self) -> dict:
        """The study's study.yaml as written, {} where it is missing or unreadable."""
        try:
            loaded = yaml.safe_load((self.study.path / schema.STUDY_CONFIG).read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return loaded if isinstance(loaded, dict) else {}


def metric_label(name: str) -> str:
    """How a table names a fold or class metric (metric_names' label)."""
    found = FOLD_METRICS.get(name) or CLASS_METRICS.get(name)
    return found.shown if found is not None else name


def difference_bounds(name: str) -> tuple[float, float]:
    """What a difference of two values of the metric can be: a bounded metric's width either way."""
    found = FOLD_METRICS.get(name) or CLASS_METRICS.get(name)
    low, high = found.bounds if found is not None else (float("-inf"), float("inf"))
    width = high - low
    return -width, width


def difference_cell(value, low, high, metric: str, why: str | None = None) -> str:
    """A paired difference with its interval, clipped to what a difference of the metric can be
    (with 2 seeds and one domain a t interval of an F1 difference reaches past +-1)."""
    floor, ceiling = difference_bounds(metric)
    if finite(low) and finite(high):
        low, high = max(float(low), floor), min(float(high), ceiling)
    return interval_cell(value, low, high, signed=True, why=why)


def domain_of(fold_id: str) -> str:
    return parse_fold_id(fold_id).domain


def ordered_arms(names) -> list[str]:
    """`full` first, then the ablations in the registry's order, user arms, algorithm arms,
    and the reference rows (baseline, prevalence floor) last; pseudo arms left out."""
    names = [n for n in dict.fromkeys(names) if not arm_registry.is_pseudo_arm(n)]
    builtin = list(arm_registry.BUILTIN_ARMS)

    def rank(name: str) -> tuple:
        if name == arm_registry.FULL:
            return (0, 0, name)
        if arm_registry.is_reference(name):
            return (4, builtin.index(name), name)
        if name in builtin:
            return (1, builtin.index(name), name)
        if arm_registry.is_algorithm(name):
            return (3, 0, name)
        return (2, 0, name)

    return sorted(names, key=rank)


def reference_protocol(frame: pd.DataFrame) -> str | None:
    """The in-distribution protocol LODO is read against: the matched reference, else intra."""
    present = set(frame["protocol"]) if "protocol" in frame else set()
    return REFERENCE if REFERENCE in present else INTRA if INTRA in present else None


# -- T1: the dataset card --------------------------------------------------------------------

def t1_domains(inputs: ReportInputs) -> ReportTable:
    card = inputs.table("dataset_card")
    if card.empty:
        raise LookupError("the dataset_card table is empty")
    rows = card.sort_values("domain").drop_duplicates("domain")
    data = rows[["domain", "n_records", "n_patients", "fs", "median_seconds"]].reset_index(drop=True)
    present = card[card["count"] > 0].groupby("domain")["class"].nunique()
    data["classes_present"] = data["domain"].map(present).fillna(0).astype(int)
    shown = pd.DataFrame({
        "Domain": data["domain"], "Records": data["n_records"].map("{:,}".format),
        "Patients": data["n_patients"].map("{:,}".format), "Sampling rate (Hz)": data["fs"].astype(str),
        "Median length (s)": data["median_seconds"].map("{:.1f}".format),
        "Classes present": data["classes_present"].astype(str),
    })
    return ReportTable("t1a_dataset_domains", "T1a. Dataset card: the domains",
                       "Records, patients, sampling rate and median record length per source domain.",
                       data, shown)


def t1_classes(inputs: ReportInputs) -> ReportTable:
    card = inputs.table("dataset_card")
    if card.empty:
        raise LookupError("the dataset_card table is empty")
    domains = sorted(card["domain"].unique())
    totals = card.groupby("class")["count"].sum().sort_values(ascending=True, kind="stable")
    data = card.pivot_table(index="class", columns="domain", values=["count", "prevalence"], aggfunc="first")
    data = data.reindex(totals.index)
    flat = pd.DataFrame({"class": totals.index})
    shown = pd.DataFrame({"Class": totals.index})
    for domain in domains:
        counts = data[("count", domain)].to_numpy()
        prevalence = data[("prevalence", domain)].to_numpy()
        flat[f"count_{domain}"] = counts
        flat[f"prevalence_{domain}"] = prevalence
        shown[domain] = [("absent" if not (finite(c) and c > 0) else f"{int(c)} ({100 * p:.1f}%)")
                         for c, p in zip(counts, prevalence)]
    flat["count_all"] = totals.to_numpy()
    shown["All"] = [f"{int(c)}" for c in totals.to_numpy()]
    return ReportTable("t1b_dataset_classes", "T1b. Dataset card: classes per domain",
                       "Positives per class and domain with the prevalence in brackets, rarest class first; "
                       "'absent': no record of the domain carries the class (it cannot be tested there).",
                       flat.reset_index(drop=True), shown)


# -- T2: the main results ------------------------------------------------------------------

def _tested(inputs: ReportInputs, table: str) -> pd.DataFrame:
    rows = inputs.table(table)
    return rows[(rows["selection"] == SELECTION) & (rows["split"] == "test")
                & (rows["label_set"] == inputs.label_set)]


def main_results_data(inputs: ReportInputs) -> pd.DataFrame:
    """Per held-out domain and across them: each arm's seed-averaged figure with its interval,
    LODO and the in-distribution reference (arm full) beside it."""
    metrics = _tested(inputs, "fold_metrics")
    if metrics.empty:
        raise LookupError("no tested runs in fold_metrics")
    metrics = metrics.assign(domain=metrics["fold_id"].map(domain_of))
    reference = reference_protocol(metrics)
    rows = []
    groups = [(LODO, arm) for arm in ordered_arms(metrics.loc[metrics["protocol"] == LODO, "arm"])]
    if reference is not None:
        groups.append((reference, arm_registry.FULL))
    for protocol, arm in groups:
        runs = metrics[(metrics["protocol"] == protocol) & (metrics["arm"] == arm)]
        per_domain: dict[str, dict] = {}
        for metric in MAIN_METRICS:
            estimates = []
            for domain, cell in runs[runs["metric"] == metric].groupby("domain"):
                # A cross-fitted protocol's parts: one estimate per part, pooled within the domain.
                parts = [seed_pooled(part["value"], part["ci_low"], part["ci_high"])
                         for _, part in cell.groupby("fold_id")]
                estimate = parts[0] if len(parts) == 1 else pooled_across(parts)
                estimates.append(estimate)
                low, high = estimate_interval(estimate, bounds=FOLD_METRICS[metric].bounds)
                row = per_domain.setdefault(domain, {"domain": domain, "arm": arm, "protocol": protocol,
                                                     "n_seeds": estimate.n_seeds})
                row.update({metric: estimate.difference, f"{metric}_lo": low, f"{metric}_hi": high})
            if len(estimates) > 1:
                pooled = pooled_across(estimates)
                low, high = estimate_interval(pooled, bounds=FOLD_METRICS[metric].bounds)
                row = per_domain.setdefault(ALL_DOMAINS, {"domain": ALL_DOMAINS, "arm": arm, "protocol": protocol,
                                                          "n_seeds": pooled.n_seeds})
                row.update({metric: pooled.difference, f"{metric}_lo": low, f"{metric}_hi": high})
        rows.extend(per_domain.values())
    data = pd.DataFrame(rows)
    domain_order = sorted(d for d in data["domain"].unique() if d != ALL_DOMAINS) + [ALL_DOMAINS]
    group_order = {(p, a): i for i, (p, a) in enumerate(groups)}
    data["_d"] = data["domain"].map(domain_order.index)
    data["_g"] = [group_order[(p, a)] for p, a in zip(data["protocol"], data["arm"])]
    return data.sort_values(["_d", "_g"]).drop(columns=["_d", "_g"]).reset_index(drop=True)


def t2_main(inputs: ReportInputs) -> ReportTable:
    data = main_results_data(inputs)
    shown = pd.DataFrame({"Held-out domain": data["domain"], "Arm": data["arm"],
                          "Protocol": data["protocol"], "Seeds": data["n_seeds"].astype(str)})
    for metric in MAIN_METRICS:
        if metric not in data:
            continue
        shown[metric_label(metric)] = [
            interval_cell(v, lo, hi, why="one seed, no interval" if n < 2 and not finite(lo) else None)
            for v, lo, hi, n in zip(data[metric], data[f"{metric}_lo"], data[f"{metric}_hi"], data["n_seeds"])]
    notes = [
        "Each figure is the mean over the arm's seeds on the held-out domain's test records; its "
        f"{int(LEVEL * 100)}% interval combines the records' bootstrap variance and the seeds' spread "
        "(Welch-Satterthwaite t). 'all domains': random-effects pooling over the held-out domains "
        "(Paule-Mandel, modified Knapp-Hartung t with domains - 1 df). Intervals are clipped to the metric's "
        "range; with 2 seeds the seed part rests on 1 df and the intervals are wide.",
        "The prevalence floor scores every record with its class's training prevalence; the baseline is "
        "a plain ResNet with BCE. The reference protocol trains on every domain at LODO's training size "
        "and tests records of the held-out domain: LODO minus reference is the domain shift's cost.",
        "Macro figures average the classes present in the test set; macro AUPRC those with at least 10 "
        "test positives.",
    ]
    return ReportTable("t2_main_results", "T2. Main results",
                       f"Test figures per held-out domain and pooled, every arm, labels '{inputs.label_set}'.",
                       data, shown, notes)


# -- T3: per class and domain ------------------------------------------------------------------

def class_domain_data(inputs: ReportInputs, arm: str = arm_registry.FULL) -> pd.DataFrame:
    classes = _tested(inputs, "class_metrics")
    classes = classes[(classes["arm"] == arm) & classes["present"].fillna(False).astype(bool)]
    if classes.empty:
        raise LookupError(f"no tested class figures for arm {arm}")
    classes = classes.assign(domain=classes["fold_id"].map(domain_of))
    protocols = [LODO] + [p for p in (reference_protocol(classes),) if p is not None]
    rows = []
    for (protocol, domain, name), cell in classes[classes["protocol"].isin(protocols)].groupby(
            ["protocol", "domain", "class"]):
        reliable = bool(cell["interval_reliable"].fillna(False).all())
        row = {"protocol": protocol, "domain": domain, "class": name, "n_seeds": int(cell["seed"].nunique()),
               "positives": int(cell.groupby("fold_id")["positives"].first().sum()),
               "train_prevalence": float(cell["train_prevalence"].mean()),
               "test_prevalence": float(cell["test_prevalence"].mean()), "interval_reliable": reliable}
        for metric in ("f1", "auroc"):
            estimate = seed_pooled(cell[metric], cell[f"{metric}_lo"], cell[f"{metric}_hi"])
            low, high = estimate_interval(estimate, bounds=CLASS_METRICS[metric].bounds)
            row.update({metric: estimate.difference, f"{metric}_lo": low, f"{metric}_hi": high})
        thresholds = cell["threshold"].replace([np.inf, -np.inf], np.nan)
        row["threshold"] = float(thresholds.mean()) if thresholds.notna().any() else float("nan")
        row["threshold_fallback_seeds"] = int(cell["threshold_fallback"].fillna(False).astype(bool).sum())
        rows.append(row)
    data = pd.DataFrame(rows)
    rarity = data[data["protocol"] == LODO].groupby("class")["train_prevalence"].mean().sort_values(kind="stable")
    order = {name: i for i, name in enumerate(rarity.index)}
    data["_r"] = data["class"].map(order).fillna(len(order))
    data["_p"] = data["protocol"].map(protocols.index)
    return data.sort_values(["_r", "class", "domain", "_p"]).drop(columns=["_r", "_p"]).reset_index(drop=True)


def threshold_text(threshold: float, fallback_seeds: int, n_seeds: int) -> str:
    if fallback_seeds == 0:
        return f"{number_cell(threshold, 2)} (validation F1)"
    if fallback_seeds == n_seeds:
        return f"{number_cell(threshold, 2)} (fallback: training prevalence)"
    return f"{number_cell(threshold, 2)} (fallback in {fallback_seeds} of {n_seeds} seeds)"


def t3_classes(inputs: ReportInputs) -> ReportTable:
    data = class_domain_data(inputs)
    shown = pd.DataFrame({
        "Class": data["class"], "Domain": data["domain"], "Protocol": data["protocol"],
        "Positives": data["positives"].astype(str),
        "Train prev.": [f"{100 * p:.1f}%" for p in data["train_prevalence"]],
        "F1": [interval_cell(v, lo, hi, reliable=r, positives=n) for v, lo, hi, r, n in
               zip(data["f1"], data["f1_lo"], data["f1_hi"], data["interval_reliable"], data["positives"])],
        "AUROC": [interval_cell(v, lo, hi, reliable=r, positives=n) for v, lo, hi, r, n in
                  zip(data["auroc"], data["auroc_lo"], data["auroc_hi"], data["interval_reliable"], data["positives"])],
        "Threshold (how chosen)": [threshold_text(t, f, n) for t, f, n in
                                   zip(data["threshold"], data["threshold_fallback_seeds"], data["n_seeds"])],
    })
    notes = ["Arm full, seed means. A class's threshold maximises its F1 on the training domains' validation "
             "records; where the validation split has no positive, the threshold falls back to the training "
             "prevalence (marked). Rows without an interval have fewer test positives than the study's minimum.",
             "Rarest class (by LODO training prevalence) first."]
    return ReportTable("t3_class_domain", "T3. Per class and held-out domain",
                       "F1 and AUROC per class and domain with positives, the threshold and how it was chosen.",
                       data, shown, notes)


# -- T3s: subgroups -------------------------------------------------------------------------------

# Age bands of the subgroup table (years): the decades ECG reference ranges change over.
AGE_BANDS = ((0.0, 40.0, "age <40"), (40.0, 60.0, "age 40-59"), (60.0, 80.0, "age 60-79"), (80.0, np.inf, "age >=80"))
SEXES = ("female", "male")


def study_records(inputs: ReportInputs) -> pd.DataFrame:
    """The prepared dataset's record table (record_id, age, sex) the study trained on, found
    through its selected run files' data path; a LookupError saying why where it is not."""
    configs = inputs.table("best_configs")
    for text in configs.get("run_file", []):
        try:
            path = ((yaml.safe_load(text) or {}).get("data") or {}).get("path")
        except yaml.YAMLError:
            continue
        if path:
            records = (inputs.study.path / path / "records.parquet").resolve()
            if records.is_file():
                return pd.read_parquet(records, columns=["record_id", "age", "sex"])
            raise LookupError(f"no demographics: the prepared dataset's {records} is not here")
    raise LookupError("no demographics: no selected run file names the prepared dataset")


def subgroups_of(records: pd.DataFrame) -> dict[str, pd.Series]:
    """Subgroup name -> record_id mask over `records`: each sex, each age band."""
    age = pd.to_numeric(records["age"], errors="coerce")
    groups = {f"sex {sex}": records["sex"] == sex for sex in SEXES}
    groups.update({name: (age >= low) & (age < high) for low, high, name in AGE_BANDS})
    return {name: mask for name, mask in groups.items() if mask.any()}


def t3_subgroups(inputs: ReportInputs) -> ReportTable:
    from heartbeatai.analysis.macro_intervals import macro_intervals

    records = study_records(inputs)
    groups = subgroups_of(records)
    if not groups:
        raise LookupError("no demographics: the data records neither age nor sex")
    predictions = inputs.table("predictions")
    predictions = predictions[(predictions["arm"] == arm_registry.FULL) & (predictions["protocol"] == LODO)
                              & (predictions["split"] == "test") & (predictions["selection"] == SELECTION)]
    thresholds = _tested(inputs, "class_metrics")
    thresholds = thresholds[(thresholds["arm"] == arm_registry.FULL) & (thresholds["protocol"] == LODO)]
    if predictions.empty:
        raise LookupError("no test predictions of arm full")
    rows = []
    for fold_id, fold in predictions.groupby("fold_id"):
        for name, mask in groups.items():
            members = set(records.loc[mask, "record_id"])
            per_seed: dict[str, list] = {"macro_auroc": [], "macro_f1": []}
            n = positives = 0
            for seed, run in fold.groupby("seed"):
                run = run[run["record_id"].isin(members)].dropna(axis=1, how="all")
                if run.empty:
                    continue
                classes, q, y = _prediction_matrices(run)
                y = y.astype(bool)
                cut = thresholds[(thresholds["fold_id"] == fold_id) & (thresholds["seed"] == seed)]
                cut = cut.set_index("class")["threshold"].reindex(classes).to_numpy(dtype=float)
                called = q >= np.where(np.isfinite(cut), cut, np.inf)
                used = y.any(axis=0) & (~y).any(axis=0)  # a class needs a positive and a negative here
                intervals = macro_intervals(y, q, called, used)
                for metric in per_seed:
                    per_seed[metric].append(intervals[metric])
                n, positives = len(run), int(y.sum())
            if n == 0:
                continue
            row = {"domain": domain_of(fold_id), "subgroup": name, "n_records": n, "positives": positives}
            for metric, found in per_seed.items():
                estimate = seed_pooled([i.value for i in found], [i.low for i in found], [i.high for i in found])
                low, high = estimate_interval(estimate, bounds=FOLD_METRICS[metric].bounds)
                row.update({"n_seeds": estimate.n_seeds, metric: estimate.difference, f"{metric}_lo": low,
                            f"{metric}_hi": high})
            rows.append(row)
    data = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(groups)}
    data = data.assign(_g=data["subgroup"].map(order)).sort_values(["domain", "_g"]).drop(columns="_g")
    data = data.reset_index(drop=True)
    shown = pd.DataFrame({"Held-out domain": data["domain"], "Subgroup": data["subgroup"],
                          "Records": data["n_records"].astype(str), "Positive labels": data["positives"].astype(str)})
    for metric in ("macro_auroc", "macro_f1"):
        shown[metric_label(metric)] = [interval_cell(v, lo, hi) for v, lo, hi in
                                        zip(data[metric], data[f"{metric}_lo"], data[f"{metric}_hi"])]
    notes = ["Arm full under LODO, each class at its validation-tuned threshold; macro figures over the classes "
             "with a positive and a negative in the subgroup. Per seed, the fold metrics' interval (linearised, the "
             "class set fixed: analysis/macro_intervals.py); over seeds, T2's noise model. Records of unknown age or "
             "sex are in no subgroup of that kind."]
    return ReportTable("t3s_subgroups", "T3s. Subgroups: sex and age band",
                       "Macro AUROC and F1 per held-out domain by sex and by age band.", data, shown, notes)


# -- T4: ablations and algorithms against full --------------------------------------------------

def min_rank_test_p(n_domains: int) -> float:
    """The smallest two-sided p an exact signed-rank test over `n_domains` domains can reach:
    every domain agreeing in sign is one of 2^k equally likely sign patterns, on either side."""
    return min(1.0, 2.0 / 2 ** n_domains) if n_domains >= 1 else float("nan")


def t4_tests(inputs: ReportInputs) -> ReportTable:
    tests = inputs.table("ablation_tests")
    if tests.empty:
        raise LookupError("the ablation_tests table is empty (one arm, or the analysis has not run)")
    family_order = {name: i for i, name in enumerate(schema.FAMILIES)}
    tests = tests.assign(
        _f=tests["family"].map(family_order).fillna(len(family_order)),
        _s=(tests["scope"] != "across").astype(int),
        _a=tests["arm"].map({a: i for i, a in enumerate(ordered_arms(tests["arm"]))}),
    ).sort_values(["protocol", "_f", "metric", "_a", "_s", "fold_id"])
    data = tests.drop(columns=["_f", "_s", "_a", "study"]).reset_index(drop=True)
    data["min_rank_test_p"] = [min_rank_test_p(int(n)) if s == "across" and finite(n) else float("nan")
                               for s, n in zip(data["scope"], data["n_folds"])]
    held_out = [ALL_DOMAINS if s == "across" else domain_of(f) for s, f in zip(data["scope"], data["fold_id"])]
    shown = pd.DataFrame({
        "Arm": data["arm"], "Metric": data["metric"].map(metric_label),
        "Held-out domain": held_out, "Protocol": data["protocol"],
        "Difference (arm - full)": [
            difference_cell(d, lo, hi, m, why="identical to full" if ident else None)
            for d, lo, hi, m, ident in zip(data["diff"], data["diff_lo"], data["diff_hi"], data["metric"],
                                           data["identical"].fillna(False))],
        "p": data["p_value"].map(p_cell), "Holm p": data["p_holm"].map(p_cell),
        "P(better / equiv. / worse)": [
            " / ".join(number_cell(v, 2) for v in values)
            for values in zip(data["p_better"], data["p_equivalent"], data["p_worse"])],
        "Decision": data["decision"].fillna("n/a"), "Family": data["family"].fillna("n/a"),
        "Min. rank-test p": data["min_rank_test_p"].map(lambda v: number_cell(v, 3)),
    })
    notes = ["Differences are oriented so that positive means the arm is better. Per domain: paired bootstrap "
             "over test records plus seed variance, t with Satterthwaite df; across domains: random effects with "
             "the modified Knapp-Hartung t. P(better/equivalent/worse) is the t confidence distribution's mass "
             "beyond, within and below the region of practical equivalence. Holm runs within each family.",
             "Min. rank-test p: the smallest two-sided p an exact signed-rank test across this many held-out domains "
             "could give (0.125 with 4): what a rank-based comparison of arms could never claim."]
    return ReportTable("t4_arm_tests", "T4. Arms against full", "Every arm's paired comparison with full (ERM), "
                       "per held-out domain and across domains, with its decision.", data, shown, notes)


def t4_class_tests(inputs: ReportInputs) -> ReportTable:
    tests = schema.pooled_rows(inputs.table("class_tests"))
    if tests.empty:
        raise LookupError("the class_tests table is empty (one arm, or a store analysed before it existed)")
    prevalence = _tested(inputs, "class_metrics").groupby("class")["train_prevalence"].mean()
    order = {name: i for i, name in enumerate(prevalence.sort_values(kind="stable").index)}
    arms = {a: i for i, a in enumerate(ordered_arms(tests["arm"]))}
    data = tests.assign(_m=tests["metric"].map({m: i for i, m in enumerate(CLASS_METRICS)}),
                        _c=tests["class"].map(order).fillna(len(order)), _a=tests["arm"].map(arms))
    data = data.sort_values(["protocol", "_m", "_c", "_a"]).drop(columns=["_m", "_c", "_a", "study"])
    data = data.reset_index(drop=True)
    data["train_prevalence"] = data["class"].map(prevalence)
    shown = pd.DataFrame({
        "Class": data["class"], "Train prev.": [f"{100 * p:.1f}%" if finite(p) else NO_VALUE_TEXT
                                                for p in data["train_prevalence"]],
        "Metric": data["metric"].map(metric_label), "Arm": data["arm"],
        "Domains (positives)": [f"{n} ({p})" for n, p in zip(data["n_folds"], data["positives"])],
        "Difference (arm - full)": [difference_cell(d, lo, hi, m) for d, lo, hi, m in
                                    zip(data["diff"], data["diff_lo"], data["diff_hi"], data["metric"])],
        "Holm p": data["p_holm"].map(p_cell), "Decision": data["decision"].fillna("n/a"),
    })
    notes = ["Per class: the arm minus full across the held-out domains where the class has at least the study's "
             "minimum of test positives (records and seeds per domain, random effects across them). Holm runs over "
             "every arm x class of one metric (the 'per-class' family); the baseline and the prevalence floor stand "
             "apart, their p unadjusted. Rarest class first."]
    return ReportTable("t4b_class_tests", "T4b. Arms against full per class",
                       "Every arm's per-class comparison with full, with its decision in the per-class family.",
                       data, shown, notes)


# -- T5: the degradation split --------------------------------------------------------------

_PART_COLUMNS = (schema.DEGRADATION_TOTAL, *schema.DEGRADATION_PARTS, "auroc_change")


def degradation_data(inputs: ReportInputs) -> pd.DataFrame:
    rows = inputs.table("degradation")
    rows = rows[rows["label_set"] == inputs.label_set]
    if rows.empty:
        raise LookupError("the degradation table is empty (no reference protocol, or the analysis has not run)")
    rarity = rows.groupby("class")["train_prevalence_lodo"].mean().sort_values(kind="stable")
    order = {name: i for i, name in enumerate(rarity.index)}
    rows = rows.assign(_r=rows["class"].map(order)).sort_values(["_r", "domain"]).drop(columns=["_r", "study"])
    return rows.reset_index(drop=True)


def t5_degradation(inputs: ReportInputs) -> ReportTable:
    data = degradation_data(inputs)
    shown = pd.DataFrame({
        "Class": data["class"], "Domain": data["domain"], "Positives": data["n_positives"].astype(str),
        "Train prev. (LODO)": [f"{100 * p:.1f}%" for p in data["train_prevalence_lodo"]],
        "F1 reference": data["f1_reference"].map(number_cell), "F1 LODO": data["f1_lodo"].map(number_cell),
    })
    labels = {schema.DEGRADATION_TOTAL: "Total change", "prevalence": "Prevalence part",
              "threshold": "Threshold part", "ranking": "Ranking part", "auroc_change": "AUROC change"}
    for part in _PART_COLUMNS:
        shown[labels[part]] = [interval_cell(v, lo, hi, reliable=bool(r), positives=n, signed=True)
                               for v, lo, hi, r, n in zip(data[part], data[f"{part}_lo"], data[f"{part}_hi"],
                                                          data["interval_reliable"].fillna(False), data["n_positives"])]
    notes = ["LODO minus the in-distribution reference on the same test records, in F1 units; the prevalence, "
             "threshold and ranking parts sum to the total (docs/analysis.md, Degradation split). Intervals: "
             "paired bootstrap over records, conditional on the trained models.",
             "The threshold part uses test labels (an upper bound of what re-thresholding recovers)."]
    return ReportTable("t5_degradation", "T5. Degradation split per class, rarest first",
                       "Where LODO loses F1 against the reference, and which part of the loss is prior shift, "
                       "thresholding and ranking.", data, shown, notes)


def t5_contrast(inputs: ReportInputs) -> ReportTable:
    rows = inputs.table("rarity_contrast")
    rows = rows[rows["label_set"] == inputs.label_set].drop(columns=["study"]).reset_index(drop=True)
    if rows.empty:
        raise LookupError("the rarity_contrast table is empty")
    shown = pd.DataFrame({
        "Cells (rare / common)": [f"{c} ({r} / {m})" for c, r, m in zip(rows["n_cells"], rows["n_rare"], rows["n_common"])],
        "Drop, rare": rows["drop_rare"].map(number_cell), "Drop, common": rows["drop_common"].map(number_cell),
        "Contrast (rare - common)": [interval_cell(v, lo, hi, signed=True) for v, lo, hi in
                                     zip(rows["contrast"], rows["contrast_lo"], rows["contrast_hi"])],
        "Ratio": rows["ratio"].map(lambda v: number_cell(v, 2)),
        "Slope per tenfold rarer": [interval_cell(v, lo, hi, signed=True) for v, lo, hi in
                                    zip(rows["slope"], rows["slope_lo"], rows["slope_hi"])],
        "Classes": rows["n_classes"].astype(str),
    })
    notes = [f"Over class x domain cells with at least {int(rows['min_positives'].iloc[0])} test positives: the "
             "rarest third (by LODO training prevalence) against the commonest third. " + str(rows["method"].iloc[0])]
    return ReportTable("t5b_rarity_contrast", "T5b. Is the drop worst on rare classes?",
                       "The F1 drop (reference minus LODO) of rare against common class x domain cells.",
                       rows, shown, notes)


# -- T6: calibration ------------------------------------------------------------------------

def _prediction_matrices(rows: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    classes = [c[2:] for c in rows.columns if c.startswith("p_") and f"y_{c[2:]}" in rows.columns]
    q = rows[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    y = rows[[f"y_{c}" for c in classes]].to_numpy(dtype=float)
    return classes, q, y


def calibration_runs(inputs: ReportInputs) -> dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]]:
    """(protocol, domain) -> per seed, the test records' probabilities and labels (arm full),
    a cross-fitted protocol's parts stacked (each record scored by the part that tested it)."""
    predictions = inputs.table("predictions")
    predictions = predictions[(predictions["arm"] == arm_registry.FULL) & (predictions["split"] == "test")
                              & (predictions["selection"] == SELECTION)]
    if predictions.empty:
        raise LookupError("no test predictions of arm full")
    reference = reference_protocol(predictions)
    out: dict[tuple[str, str], list] = {}
    for protocol in [LODO] + ([reference] if reference else []):
        rows = predictions[predictions["protocol"] == protocol]
        rows = rows.assign(domain=rows["fold_id"].map(domain_of))
        for domain, by_domain in rows.groupby("domain"):
            seeds = []
            for _, run in by_domain.groupby("seed"):
                run = run.dropna(axis=1, how="all").sort_values("record_id")
                _, q, y = _prediction_matrices(run)
                present = np.nansum(y, axis=0) > 0  # a class without a test positive has no calibration to read
                seeds.append((q[:, present], y[:, present]))
            out[(protocol, domain)] = seeds
    return out


def classwise_ece(q: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(expected_calibration_error(q, y, bins=ECE_BINS))) if q.size else float("nan")


def t6_calibration(inputs: ReportInputs) -> ReportTable:
    runs = calibration_runs(inputs)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rows = []
    for (protocol, domain), seeds in runs.items():
        n = min(len(q) for q, _ in seeds)
        point = float(np.mean([classwise_ece(q, y) for q, y in seeds]))
        replicates = []
        for _ in range(ECE_BOOTSTRAP):
            index = rng.integers(0, n, n)  # the same records for every seed: their mean's record noise
            replicates.append(np.mean([classwise_ece(q[index], y[index]) for q, y in seeds]))
        low, high = np.quantile(replicates, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        rows.append({"domain": domain, "protocol": protocol, "n_records": n, "n_seeds": len(seeds),
                     "ece": point, "ece_lo": float(low), "ece_hi": float(high)})
    data = pd.DataFrame(rows).sort_values(["domain", "protocol"]).reset_index(drop=True)
    shown = pd.DataFrame({"Held-out domain": data["domain"], "Protocol": data["protocol"],
                          "Records": data["n_records"].astype(str), "Seeds": data["n_seeds"].astype(str),
                          "ECE": [interval_cell(v, lo, hi) for v, lo, hi in zip(data["ece"], data["ece_lo"], data["ece_hi"])]})
    notes = [f"Classwise expected calibration error ({ECE_BINS} equal-width bins per class, averaged over the classes "
             "with a test positive) of record-level probabilities, arm full, mean over seeds. Interval: percentile "
             f"bootstrap over test records ({ECE_BOOTSTRAP} replicates, the same records for every seed), conditional "
             "on the trained models. The reference tests its own part of the held-out domain's records."]
    return ReportTable("t6_calibration", "T6. Calibration per domain",
                       "Expected calibration error of the LODO and reference models on each held-out domain.",
                       data, shown, notes)


# -- T7: the search and its cost ---------------------------------------------------------------

def selected_trials(inputs: ReportInputs) -> pd.Series:
    """fold_id -> the search trial the fold's validation selection chose: the one its `search`
    arm was tested as, else (a store without that row) the scored trial with the best
    selection value, as selection.py picks it."""
    tested = inputs.table("fold_metrics")
    tested = tested[(tested["arm"] == arm_registry.SEARCH) & (tested["selection"] == SELECTION)]
    chosen = tested.drop_duplicates("fold_id").set_index("fold_id")["trial_id"]
    trials = inputs.table("trials")
    scored = trials[(trials["arm"] == arm_registry.SEARCH) & trials["status"].isin(schema.SCORED_STATUSES)
                    & trials["selection_value"].notna()]
    for fold_id, fold in scored.groupby("fold_id"):
        if fold_id not in chosen.index:
            metric = str(fold["selection_metric"].iloc[0])
            best = fold["selection_value"].idxmin() if metric_mode(metric) == "min" else fold["selection_value"].idxmax()
            chosen.loc[fold_id] = fold.loc[best, "trial_id"]
    return chosen


def _searched_columns(inputs: ReportInputs, trials: pd.DataFrame) -> list[str]:
    searched = inputs.study.store.searched_parameters(inputs.study.name)
    if searched:
        return [f"cfg.{p}" for p in searched if f"cfg.{p}" in trials]
    varying = [c for c in trials.columns if c.startswith("cfg.") and c != "cfg.seed"
               and trials[c].astype(str).nunique() > 1]
    return varying


def t7_search(inputs: ReportInputs) -> ReportTable:
    trials = inputs.table("trials")
    search = trials[trials["arm"] == arm_registry.SEARCH]
    if search.empty:
        raise LookupError("no search trials")
    chosen = selected_trials(inputs)
    importances = inputs.table("importances")
    importances = importances[schema.searched_by(importances) == arm_registry.SEARCH]  # full's search
    columns = _searched_columns(inputs, search)
    rows = []
    for fold_id, fold in search[search["selection"] == "search"].groupby("fold_id"):
        statuses = fold["status"].value_counts()
        row = {"protocol": fold["protocol"].iloc[0], "fold_id": fold_id, "trials": len(fold),
               **{f"trials_{s}": int(statuses.get(s, 0)) for s in schema.FINISHED_STATUSES}}
        trial_id = chosen.get(fold_id)
        winner = fold[fold["trial_id"] == trial_id]
        row["selected_trial"] = trial_id
        row["selection_metric"] = winner["selection_metric"].iloc[0] if len(winner) else None
        row["selection_value"] = float(winner["selection_value"].iloc[0]) if len(winner) else float("nan")
        for column in columns:
            row[column.removeprefix("cfg.")] = winner[column].iloc[0] if len(winner) else None
        imp = importances[importances["fold_id"] == fold_id]
        for _, item in imp.iterrows():
            row[f"importance.{item['param']}"] = float(item["importance"])
            row["importance_trials"] = int(item["n_distinct_trials"]) if finite(item.get("n_distinct_trials")) else None
        rows.append(row)
    data = pd.DataFrame(rows)
    params = [c.removeprefix("cfg.") for c in columns]
    shown = pd.DataFrame({"Fold": data["fold_id"],
                          "Trials (done / stopped / errored)": [
                              f"{t} ({c} / {e} / {x})" for t, c, e, x in
                              zip(data["trials"], data[f"trials_{schema.COMPLETED}"],
                                  data[f"trials_{schema.EARLY_STOPPED}"], data[f"trials_{schema.ERRORED}"])],
                          "Selected value": data["selection_value"].map(number_cell)})
    for param in params:
        shown[param] = data[param].map(_config_value)
    importance_columns = [c for c in data.columns if c.startswith("importance.")]
    if importance_columns:
        shown["Importances (trials)"] = [
            ", ".join(f"{c.removeprefix('importance.')} {row[c]:.2f}" for c in importance_columns if finite(row[c]))
            + (f" ({int(row['importance_trials'])})" if finite(row.get("importance_trials")) else "")
            for _, row in data.iterrows()]
    notes = ["Each fold's search selects on the training domains' validation records only. Importances: Optuna's "
             "fANOVA over the fold's completed trials of distinct configurations (their number in brackets); "
             "read those resting on fewer than 10 trials as a sketch."]
    return ReportTable("t7a_search", "T7a. The search per fold",
                       "Trials run, the selected configuration and the parameters' importances.", data, shown, notes)


def _config_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if finite(value) else "n/a"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return str(value)


def t7_cost(inputs: ReportInputs) -> ReportTable:
    trials = inputs.table("trials")
    if trials.empty:
        raise LookupError("the trials table is empty")
    resources = inputs.config().get("resources") or {}
    workers = float(resources.get("workers") or 1)
    cpus = workers * float(resources.get("cpus_per_worker") or 1.0)
    gpus = workers * float(resources.get("gpus_per_worker") or 0.0)
    trials = trials.assign(stage=np.where(trials["arm"] == arm_registry.SEARCH, "search", "arm: " + trials["arm"]))
    rows = []
    for (protocol, stage), group in trials.groupby(["protocol", "stage"]):
        hours = float(group["wall_time_s"].fillna(0).sum()) / 3600
        rows.append({"protocol": protocol, "stage": stage, "trials": len(group), "folds": group["fold_id"].nunique(),
                     "trial_hours": hours, "cpu_hours": hours * cpus, "gpu_hours": hours * gpus})
    data = pd.DataFrame(rows)
    total = {"protocol": "all", "stage": "total", "trials": int(data["trials"].sum()),
             "folds": int(trials["fold_id"].nunique()),
             **{c: float(data[c].sum()) for c in ("trial_hours", "cpu_hours", "gpu_hours")}}
    data = pd.concat([data, pd.DataFrame([total])], ignore_index=True)
    shown = pd.DataFrame({"Protocol": data["protocol"], "Stage": data["stage"], "Trials": data["trials"].astype(str),
                          "Folds": data["folds"].astype(str), "Trial hours": data["trial_hours"].map(lambda v: f"{v:.2f}"),
                          "CPU hours": data["cpu_hours"].map(lambda v: f"{v:.2f}"),
                          "GPU hours": data["gpu_hours"].map(lambda v: f"{v:.2f}")})
    notes = [f"Trial hours: the trials' own wall time summed (trials run concurrently, so the study took less). CPU and "
             f"GPU hours: trial hours times the trial's reservation ({cpus:g} CPU, {gpus:g} GPU from the study's "
             "resources section)."]
    return ReportTable("t7b_cost", "T7b. Compute per stage", "What each stage of the study cost.", data, shown, notes)


# Every table of the report, in the order it prints: one declaration (figures.py, build.py read it).
TABLES: dict[str, Callable[[ReportInputs], ReportTable]] = {
    "t1a_dataset_domains": t1_domains,
    "t1b_dataset_classes": t1_classes,
    "t2_main_results": t2_main,
    "t3_class_domain": t3_classes,
    "t3s_subgroups": t3_subgroups,
    "t4_arm_tests": t4_tests,
    "t4b_class_tests": t4_class_tests,
    "t5_degradation": t5_degradation,
    "t5b_rarity_contrast": t5_contrast,
    "t6_calibration": t6_calibration,
    "t7a_search": t7_search,
    "t7b_cost": t7_cost,
}
