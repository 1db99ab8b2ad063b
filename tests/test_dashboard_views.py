"""The dashboard's views and callbacks, called as functions on a small generated store."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from heartbeatai.analysis.decisions import decide
import yaml
from dash import Output, html

from heartbeatai.arms import DEFAULT_ARMS, algorithm_arm, algorithm_of, is_reference
from heartbeatai.dashboard import callbacks, figures, figures_ablations, figures_sweeps, layout
from heartbeatai.dashboard.app import create_app
from heartbeatai.dashboard.figures_ecg import LEADS
from heartbeatai.dashboard.views import ViewInputError, Views
from heartbeatai.metric_names import VALIDATION_METRICS, metric_mode
from heartbeatai.results import ResultsStore, ResultsWriter, schema
from heartbeatai.testing.fake_store import make_store
from store_cache import store_copy
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    make_store(root, n_folds=3, n_trials=45, seeds=2, records_per_fold=20, record_views_per_fold=4)
    return root


@pytest.fixture
def views(root):
    return Views(ResultsStore(root))


def _alert_texts(components) -> str:
    return " ".join(_shown(c) for c in components)


def _walk(component):
    """Every component of a Dash tree, depth first (a component keeps its own in `children`)."""
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            yield from _walk(child)


def _by_id(component, component_id: str):
    [found] = [c for c in _walk(component) if getattr(c, "id", None) == component_id]
    return found


def _all(component, kind, class_name: str | None = None) -> list:
    return [c for c in _walk(component) if isinstance(c, kind)
            and (class_name is None or class_name in (getattr(c, "className", None) or "").split())]


def _shown(component) -> str:
    """The text a component shows: its string children in order, inline ones (B, I) included."""
    children = getattr(component, "children", None)
    return "".join(child if isinstance(child, str) else _shown(child)
                   for child in (children if isinstance(children, (list, tuple)) else [children]) if child is not None)


def _degradation(root, **filters) -> pd.DataFrame:
    return ResultsStore(root).read("demo", "degradation", filters={"label_set": "noisy", **filters})


def _trace(figure, name_start: str):
    return next(t for t in figure.data if (t.name or "").startswith(name_start))


def _unreliable_class(root, domain: str) -> pd.Series:
    rows = _degradation(root, domain=domain)
    return rows[~rows["interval_reliable"].astype(bool)].iloc[0]


def test_the_degradation_heatmap_is_the_total_f1_change_rarest_classes_first(views, root):
    view = views.degradation("demo", "noisy")
    heatmap = _trace(view.heatmap, "total F1 change")
    rows = _degradation(root)

    prevalence = rows.groupby("class")["train_prevalence_lodo"].mean()
    assert list(heatmap.y) == list(prevalence.sort_values().index)
    assert list(heatmap.x) == ["cpsc", "georgia", "ptbxl"]
    reliable = rows[rows["interval_reliable"].astype(bool)].iloc[0]
    i, j = list(heatmap.y).index(reliable["class"]), list(heatmap.x).index(reliable["domain"])
    assert heatmap.z[i][j] == pytest.approx(reliable["total"])
    assert heatmap.zmid == 0 and heatmap.colorbar.title.text == "Δ F1"
    assert "F1 units" in view.heatmap.layout.title.text
    assert [o["value"] for o in view.class_options] == list(heatmap.y)


def test_a_heatmap_cell_with_too_few_positives_is_greyed_and_shows_its_count(views, root):
    view = views.degradation("demo", "noisy")
    heatmap, grey = _trace(view.heatmap, "total F1 change"), _trace(view.heatmap, "fewer positives")
    cell = _unreliable_class(root, "cpsc")

    i, j = list(heatmap.y).index(cell["class"]), list(heatmap.x).index("cpsc")
    assert heatmap.z[i][j] is None or np.isnan(heatmap.z[i][j])  # no colour that could be read as a figure
    assert grey.z[i][j] == 1 and grey.text[i][j] == f"{cell['n_positives']} pos."
    unreliable = _degradation(root)["interval_reliable"].astype(bool).eq(False).sum()
    assert view.heatmap.layout.meta["unreliable_cells"] == unreliable > 0


def test_the_parts_are_stacked_against_the_total_and_add_up_to_it(views, root):
    parts = views.decomposition("demo", "noisy", None, "ptbxl").parts
    rows = _degradation(root, domain="ptbxl").set_index("class")

    bars = [t for t in parts.data if t.type == "bar"]
    assert [t.name.split(" ")[0] for t in bars] == ["prevalence", "threshold", "ranking"]
    assert parts.layout.barmode == "relative" and "F1 units" in parts.layout.xaxis.title.text
    totals = {cls: value for t in parts.data if t.type == "scatter" for cls, value in zip(t.y, t.x)}
    assert set(totals) == set(rows.index)
    for position, cls in enumerate(bars[0].y):
        stacked = sum(bar.x[position] for bar in bars)
        assert stacked == pytest.approx(totals[cls], abs=1e-12)
        assert totals[cls] == pytest.approx(rows.loc[cls, "total"])
    order = rows["train_prevalence_lodo"].sort_values().index  # rare first, as in the heatmap
    heatmap_order = [c for c in _trace(views.degradation("demo", "noisy").heatmap, "total").y if c in rows.index]
    assert list(bars[0].y) == heatmap_order and set(order) == set(heatmap_order)
    assert parts.layout.yaxis.autorange == "reversed"  # the rarest at the top


def test_an_unreliable_class_shows_its_count_and_no_error_bar(views, root):
    view = views.decomposition("demo", "noisy", None, "cpsc")
    cell = _unreliable_class(root, "cpsc")
    count = f"{cell['n_positives']} pos."

    for figure, name in ((view.parts, "total"), (view.auroc_change, "AUROC change")):
        banded, counted = _trace(figure, f"{name} (95% interval)"), _trace(figure, f"{name}, too few positives")
        assert cell["class"] not in banded.y and banded.error_x.array is not None
        assert counted.error_x.array is None and counted.error_x.visible is not True
        assert counted.error_y.array is None
        assert dict(zip(counted.y, counted.text))[cell["class"]] == count
        assert f"{cell['class']} ({count})" in figure.layout.yaxis.ticktext
    hatching = dict(zip(view.parts.data[0].y, view.parts.data[0].marker.pattern.shape))
    assert hatching[cell["class"]] == "/" and set(hatching.values()) == {"", "/"}


def test_the_auroc_change_is_beside_the_split_labelled_as_the_threshold_free_ranking_change(views, root):
    figure = views.decomposition("demo", "noisy", None, "georgia").auroc_change
    rows = _degradation(root, domain="georgia").set_index("class")

    assert "threshold-free ranking change (AUROC)" in figure.layout.title.text
    drawn = {cls: value for t in figure.data for cls, value in zip(t.y, t.x)}
    assert drawn == pytest.approx(rows["auroc_change"].to_dict())


def test_the_label_free_prevalence_estimates_are_their_own_line_marked_where_far_from_the_truth(views, root):
    rows = _degradation(root)
    flags = [f"{e}_far_{side}" for e in schema.PREVALENCE_ESTIMATORS for side in ("lodo", "reference")]
    far = rows[rows[flags].astype(bool).any(axis=1)].iloc[0]
    near = rows[~rows[flags].astype(bool).any(axis=1)].iloc[0]

    for row in (far, near):
        detail = views.decomposition("demo", "noisy", row["class"], row["domain"]).detail
        estimates = _by_id(detail, "degradation-estimates")
        text = _shown(estimates)
        assert text.startswith("label-free prevalence estimates (what a deployer could recover without labels; "
                               "not used in the split)")
        assert f"true test prevalence {row['test_prevalence']:.2%}" in text
        assert f"EM (Saerens et al. 2002) {row['em_prevalence_lodo']:.2%} (LODO)" in text
        assert f"BBSE (Lipton et al. 2018) {row['bbse_prevalence_lodo']:.2%} (LODO)" in text
        badges = _all(estimates, html.Span, "estimate-far")
        assert len(badges) == int(row[flags].astype(bool).sum())
        assert all(_shown(badge) == "far from the truth" for badge in badges)
    assert len(_all(views.decomposition("demo", "noisy", far["class"], far["domain"]).detail, html.Span,
                    "estimate-far")) > 0


def test_a_finished_study_without_a_reference_says_so_and_how_to_add_one(tmp_path):
    store_copy(tmp_path, n_folds=2, n_trials=6, classes=6, seeds=1, records_per_fold=4, record_views_per_fold=1)
    store, writer = ResultsStore(tmp_path), ResultsWriter(tmp_path / "demo")
    trials = store.read("demo", "trials")
    writer.replace("trials", trials[trials["protocol"] == "lodo"], where={})  # a study of protocols: [lodo]
    for table in ("degradation", "rarity_contrast"):  # which the analysis then leaves empty
        shutil.rmtree(tmp_path / "demo" / "results" / table)

    view = Views(ResultsStore(tmp_path)).degradation("demo", "noisy")

    text = _alert_texts(view.status)
    assert "not written yet" not in text
    assert "protocols (lodo) have no `reference` or `intra` folds" in text
    assert "add `reference` to `protocols:` in the study config" in text
    assert view.heatmap.layout.meta["message"].startswith("No degradation split")


def test_the_split_s_intervals_are_labelled_conditional_on_the_trained_models(views, root):
    note = views.degradation("demo", "noisy").reference
    assert _shown(_by_id(note, "degradation-conditional")).startswith("conditional on these trained models: each "
                                                                      "interval resamples the shared records")
    view = views.decomposition("demo", "noisy", None, "ptbxl")
    for figure in (view.parts, view.auroc_change):
        assert "intervals conditional on these trained models" in figure.layout.title.text
    lines = [_shown(line) for line in _all(view.detail, html.Div, "small")]
    assert "intervals conditional on these trained models" in lines
    assert _degradation(root)["conditional"].astype(bool).all()


def test_the_view_says_which_reference_each_domain_was_paired_with_and_on_how_many_records(views, root):
    note = views.degradation("demo", "noisy").reference
    rows = _degradation(root).groupby("domain")["n_records"].first()

    items = {_shown(item).split(":")[0]: _shown(item) for item in _all(note, html.Li)}
    assert set(items) == {f"held out {domain}" for domain in rows.index}
    assert items["held out georgia"].startswith(f"held out georgia: matched-size reference, {rows['georgia']:,} "
                                                "shared records")
    assert items["held out cpsc"].startswith(f"held out cpsc: intra-source folds, {rows['cpsc']:,} shared records")
    assert "The parts are in F1 units and add up to the total" in _shown(_all(note, html.P)[0])


def test_the_chosen_class_is_spelled_out_with_intervals_only_where_reliable(views, root):
    rows = _degradation(root, domain="ptbxl")
    sure = rows[rows["interval_reliable"].astype(bool)].iloc[0]
    unsure = _unreliable_class(root, "cpsc")

    reliable = views.decomposition("demo", "noisy", sure["class"], "ptbxl").detail
    unreliable = views.decomposition("demo", "noisy", unsure["class"], "cpsc").detail

    [header] = _all(reliable, html.H6)
    lines = [_shown(line) for line in _all(reliable, html.Div, "small")]
    assert _shown(header).startswith(f"{sure['class']} held out on ptbxl")
    assert lines[0].endswith(f"total {sure['total']:+.3f} [{sure['total_lo']:+.3f}, {sure['total_hi']:+.3f}]")
    assert any(line.startswith("threshold-free ranking change (AUROC)") for line in lines)
    unsure_lines = [_shown(line) for line in _all(unreliable, html.Div, "small")]
    assert unsure_lines[0].endswith(f"total {unsure['total']:+.3f} ({unsure['n_positives']} pos., no interval)")
    assert not any(f"{unsure['total_lo']:+.3f}" in line for line in unsure_lines)


def test_without_a_choice_the_first_domain_and_its_rarest_readable_class_are_shown(views, root):
    view = views.decomposition("demo", "noisy", None, None)

    assert "Held out cpsc" in view.parts.layout.title.text
    rows = ResultsStore(root).read("demo", "degradation", filters={"label_set": "noisy", "domain": "cpsc"})
    order = [c for c in view.parts.data[0].y]  # rarest first, as the figure draws them
    readable = set(rows.loc[rows["interval_reliable"].astype(bool), "class"])
    expected = next(c for c in order if c in readable)
    assert order[0] not in readable and expected != order[0]  # the store has rarer classes without one
    assert _shown(_all(view.detail, html.H6)[0]).startswith(f"{expected} held out on cpsc")


def test_a_heatmap_click_picks_the_class_and_domain_to_decompose():
    assert Views.picked_cell({"points": [{"x": "cpsc", "y": "PAC", "z": -0.1}]}) == ("PAC", "cpsc")
    assert Views.picked_cell(None) == (None, None)


def _tests(root, **filters) -> pd.DataFrame:
    return ResultsStore(root).read("demo", "ablation_tests", filters={"protocol": "lodo", **filters})


def _table_rows(component, table_id: str) -> list[list[str]]:
    """The rows of a dbc.Table found by id inside a component tree, as lists of cell texts."""
    def find(node):
        if getattr(node, "id", None) == table_id:
            return node
        children = getattr(node, "children", None)
        for child in children if isinstance(children, (list, tuple)) else [children]:
            if child is not None and not isinstance(child, str) and (found := find(child)) is not None:
                return found
        return None

    found = find(component)
    if found is None:
        return []
    body = found.children[1]
    return [[cell.children for cell in row.children] for row in body.children]


def test_ablations_plot_each_arms_paired_difference_with_the_tables_own_interval(views, root):
    view = views.ablations("demo", "lodo", None, "all", "auroc")
    stored = _tests(root, metric="macro_auroc")

    arms = [trace.name for trace in view.arms.data]
    assert "full" not in arms and arms[-1] == "prevalence"  # differences from full: full is the zero line
    trace = view.arms.data[arms.index("no-se")]
    assert list(trace.x) == ["lodo:cpsc", "lodo:georgia", "lodo:ptbxl", "overall"]
    rows = stored[stored["arm"] == "no-se"].assign(
        x=lambda f: np.where(f["scope"] == "across", "overall", f["fold_id"])).set_index("x").loc[list(trace.x)]
    # Every band is an interval of the plotted difference, computed by the table's function.
    assert np.allclose(trace.y, rows["diff"])
    assert np.allclose(np.array(trace.y) + np.array(trace.error_y.array), rows["diff_hi"])
    assert np.allclose(np.array(trace.y) - np.array(trace.error_y.arrayminus), rows["diff_lo"])


def test_the_macro_auprc_tests_say_which_classes_the_average_keeps(views):
    auprc = str(views.ablations("demo", "lodo", None, "all", "auprc").tests)
    assert "Macro AUPRC averages each domain's classes with at least 10 test positives" in auprc
    assert "Macro AUPRC averages" not in str(views.ablations("demo", "lodo", None, "all", "auroc").tests)


def test_the_across_domain_rows_show_signs_intervals_the_claim_and_the_decision(views, root):
    view = views.ablations("demo", "lodo", None, "all", "auroc")
    across = _tests(root, metric="macro_auroc", scope="across").set_index("arm")

    rows = {row[0]: row for row in _table_rows(view.tests, "ablation-across-table")}
    assert set(rows) == {a for a in across.index if not is_reference(a)}
    stored = across.loc["no-mixstyle"]
    assert rows["no-mixstyle"][1] == f"{int(stored.n_better)} better, {int(stored.n_worse)} worse of 3"
    assert rows["no-mixstyle"][2] == f"{stored['diff']:+.4f} [{stored['diff_lo']:+.4f}, {stored['diff_hi']:+.4f}]"
    assert rows["no-mixstyle"][3] == "confirmatory"
    assert rows["no-mixstyle"][4:7] == [f"{stored[f'p_{o}']:.3f}" for o in ("better", "equivalent", "worse")]
    assert rows["no-mixstyle"][7] == "±0.01"
    for arm, row in rows.items():
        assert row[9] == across.loc[arm, "decision"]  # the page's rule at 0.95 agrees with the analysis'
    rule = _shown(_by_id(view.tests, "ablation-rule"))
    assert rule.startswith("Decision rule: each comparison's best-supported claim")
    assert "Holm-adjusted p in its family is at most 0.05" in rule
    assert "the default (the study config sets no analysis.decision_probability)" in rule


def test_the_decision_threshold_comes_from_the_study_config(root, tmp_path):
    shutil.copytree(root, tmp_path / "root")
    (tmp_path / "root" / "demo" / "study.yaml").write_text("name: demo\nanalysis:\n  decision_probability: 0.6\n")
    views = Views(ResultsStore(tmp_path / "root"))

    view = views.ablations("demo", "lodo", None, "all", "auroc")

    across = _tests(tmp_path / "root", metric="macro_auroc", scope="across").set_index("arm")
    rule = _shown(_by_id(view.tests, "ablation-rule"))
    assert "is at most 0.4" in rule and "the study config's analysis.decision_probability" in rule
    for arm, row in {row[0]: row for row in _table_rows(view.tests, "ablation-across-table")}.items():
        applied = decide(across.loc[arm].to_dict(), 0.6)
        stored = across.loc[arm, "decision"]
        assert row[9] == (applied if applied == stored else f"{applied} (table: {stored})")
    changed = [a for a in across.index if decide(across.loc[a].to_dict(), 0.6) != across.loc[a, "decision"]]
    assert ("differ from the rule at 0.6" in _alert_texts(view.status)) == bool(changed)


def test_per_domain_rows_show_the_interval_p_holm_p_and_the_claim(three_seed_root):
    view = Views(ResultsStore(three_seed_root)).ablations("demo", "lodo", None, "all", "auroc")
    stored = _tests(three_seed_root, metric="macro_auroc", scope="fold").set_index(["arm", "fold_id"])

    rows = _table_rows(view.tests, "ablation-tests-table")
    assert rows and all(row[4] == "records and seeds" for row in rows)
    for arm, fold, _, _, _, p, holm, claim, decision in rows:
        row = stored.loc[(arm, fold)]
        assert p == f"{row['p_value']:.3g}" and holm == f"{row['p_holm']:.3g}"
        assert claim.startswith(row["claim"]) and decision == row["decision"]


@pytest.fixture(scope="module")
def three_seed_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("three-seeds")
    make_store(root, n_folds=4, n_trials=8, classes=8, seeds=3, records_per_fold=4, record_views_per_fold=1)
    return root


def test_the_baseline_and_the_prevalence_floor_are_shown_apart_as_references(views):
    view = views.ablations("demo", "lodo", None, "all", "auroc")

    references = _table_rows(view.tests, "ablation-reference-table")
    assert {row[0] for row in references} == {"baseline", "prevalence"}
    assert len(references) == 2 * (3 + 1)  # per held-out domain and across
    family = _table_rows(view.tests, "ablation-tests-table") + _table_rows(view.tests, "ablation-across-table")
    assert not {row[0] for row in family} & {"baseline", "prevalence"}
    assert "References" in [_shown(h) for h in _all(view.tests, html.H6)]


def test_the_arm_and_seed_filters_narrow_the_ablation_view_but_keep_the_prevalence_floor(views):
    view = views.ablations("demo", "lodo", ["full", "no-se", "prevalence"], 1, "f1")

    assert [trace.name for trace in view.arms.data] == ["no-se", "prevalence"]
    assert {row[0] for row in _table_rows(view.tests, "ablation-across-table")} == {"no-se"}
    assert {row[0] for row in _table_rows(view.tests, "ablation-tests-table")} == {"no-se"}
    assert {row[0] for row in _table_rows(view.tests, "ablation-reference-table")} == {"prevalence"}


def test_the_difference_axis_fits_the_arms_and_leaves_a_far_prevalence_floor_off_it_with_a_note():
    rows = [("no-se", 0.02, 0.01, 0.03), ("no-mixstyle", -0.03, -0.05, -0.01), ("prevalence", -0.40, -0.45, -0.35)]
    tests = pd.DataFrame([dict(arm=arm, scope=scope, fold_id=fold, diff=d, diff_lo=lo, diff_hi=hi, rope=0.01)
                          for arm, d, lo, hi in rows
                          for scope, fold in (("fold", "lodo:cpsc"), ("fold", "lodo:georgia"), ("across", None))])

    figure = figures_ablations.difference_figure(tests, ["no-se", "no-mixstyle", "prevalence"], "macro_auroc")

    low, high = figure.layout.yaxis.range
    assert low < -0.05 and high > 0.03  # every arm's interval is on the axis...
    assert high - low < 0.12  # ...and fills it: a 0.05 difference is not squeezed by the floor
    assert figure.layout.meta["off_axis"] == ["prevalence"]
    [note] = [a.text for a in figure.layout.annotations if "floor" in a.text]
    assert note.startswith("prevalence floor off the axis: -0.400 to -0.400")


def test_per_class_effects_cover_only_rare_classes_with_their_positive_counts(views, root):
    view = views.ablations("demo", "lodo", None, "all", "auroc")
    effects = view.rare_effects.data[0]
    classes = ResultsStore(root).read("demo", "class_metrics", filters={"protocol": "lodo"})
    prevalence = classes.groupby("class")["train_prevalence"].mean()

    assert set(effects.x) and all(prevalence[c] < 0.02 for c in effects.x)
    assert "full" not in set(effects.y) and "prevalence" not in set(effects.y)
    full = classes[(classes["arm"] == "full") & (classes["seed"] == 1) & (classes["selection"] == "val")]
    first = effects.x[0]
    assert view.rare_effects.layout.xaxis.ticktext[0] == f"{first}<br>{full.loc[full['class'] == first, 'positives'].sum()} pos."


def test_the_search_pseudo_arm_is_in_no_arm_list_legend_or_heatmap_row(root, tmp_path):
    # A real store keys the search winner's test scores as arm "search", selection "val".
    shutil.copytree(root, tmp_path / "root")
    store, writer = ResultsStore(tmp_path / "root"), ResultsWriter(tmp_path / "root" / "demo")
    for name in ("fold_metrics", "class_metrics"):
        full = store.read("demo", name, filters={"arm": "full", "seed": 1})
        writer.write(name, full.assign(arm="search", seed=0))
    views = Views(ResultsStore(tmp_path / "root"))

    view = views.ablations("demo", "lodo", None, "all", "auroc")
    arms, _ = views.filter_options("demo")

    assert "search" not in {t.name for t in view.arms.data}
    assert "search" not in set(view.rare_effects.data[0].y)
    assert "search" not in {o["value"] for o in arms}


def test_a_rare_class_with_too_few_positives_everywhere_is_greyed_with_its_count(root, tmp_path):
    shutil.copytree(root, tmp_path / "root")
    store = ResultsStore(tmp_path / "root")
    rare = Views(store).ablations("demo", "lodo", None, "all", "auroc").rare_effects.data[0].x[0]
    classes = store.read("demo", "class_metrics", filters={"class": rare})
    ResultsWriter(tmp_path / "root" / "demo").write("class_metrics", classes.assign(positives=2, interval_reliable=False))

    figure = Views(ResultsStore(tmp_path / "root")).ablations("demo", "lodo", None, "all", "auroc").rare_effects

    effect, grey = _trace(figure, "effect"), _trace(figure, "too few positives")
    column = list(effect.x).index(rare)
    assert all(row[column] is None or np.isnan(row[column]) for row in effect.z)
    assert all(row[column] == "6 pos." for row in grey.text)  # 2 positives in each of 3 held-out domains
    assert figure.layout.meta["greyed"] == [rare]


def test_the_dataset_card_colours_prevalence_on_a_log_scale_with_empty_classes_last():
    rows = [("AF", 720, 0.72), ("RBBB", 40, 0.04), ("Brady", 2, 0.002), ("LQT", 0, 0.0)]
    card = pd.DataFrame([dict(domain=domain, **{"class": cls}, count=n, prevalence=p, n_records=1000)
                         for domain in ("cpsc", "georgia") for cls, n, p in rows])

    figure = figures.dataset_card_figure(card)
    heatmap = figure.data[0]

    assert list(heatmap.y) == ["Brady", "RBBB", "AF", "LQT"]  # rarest first, the empty class last
    z = np.asarray(heatmap.z, float)
    # log scale: 0.2 % and 4 % are as far apart in colour as 4 % and 72 % roughly are, not both white
    assert z[0, 0] == pytest.approx(np.log10(0.2)) and z[2, 0] == pytest.approx(np.log10(72))
    assert np.isnan(z[3]).all() and figure.layout.meta["empty_classes"] == ["LQT"]
    assert "log" in heatmap.colorbar.title.text and "1%" in heatmap.colorbar.ticktext


def test_sweeps_draw_the_search_from_the_trials_table_and_mark_asha_stopped_trials(views, root):
    view = views.sweeps("demo", "lodo", "lodo:cpsc")
    trials = ResultsStore(root).read("demo", "trials", filters={"fold_id": "lodo:cpsc", "arm": "search"})

    stopped = next(t for t in view.curves.data if t.name == "stopped by ASHA")
    assert sorted(stopped.text) == sorted(trials.loc[trials.status == "early_stopped", "trial_id"])
    assert "Parallel" in view.parallel.layout.title.text
    assert {"mixstyle.p", "label_smoothing", "loss.kind"} <= {a.title.text for a in
                                                               [view.slices.layout[k] for k in view.slices.layout
                                                                if k.startswith("xaxis")]}
    importances = ResultsStore(root).read("demo", "importances", filters={"fold_id": "lodo:cpsc"})
    assert sorted(view.importances.data[0].y) == sorted(importances.param)


def test_the_parallel_coordinates_show_only_the_study_s_searched_parameters_and_the_objective(root, tmp_path):
    shutil.copytree(root, tmp_path / "root")
    study = tmp_path / "root" / "demo"
    trials = ResultsStore(root).read("demo", "trials", filters={"fold_id": "lodo:cpsc", "arm": "search"})
    # A real trial row carries its whole configuration: unsearched fields, some differing between trials.
    ResultsWriter(study).replace("trials", trials.assign(**{"cfg.seed": range(len(trials)), "cfg.epochs": 30}),
                                 where={"fold_id": "lodo:cpsc", "arm": "search"})
    (study / "study.yaml").write_text("name: demo\nsearch:\n  space:\n    mixstyle.p: {uniform: [0.0, 1.0]}\n"
                                      "    lr: {loguniform: [1.0e-4, 1.0e-2]}\n")

    parallel = Views(ResultsStore(tmp_path / "root")).sweeps("demo", "lodo", "lodo:cpsc").parallel

    assert [d.label for d in parallel.data[0].dimensions] == [trials["selection_metric"].iloc[0], "lr", "mixstyle.p"]


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_the_sweep_ranks_first_the_trial_best_in_its_metrics_direction(root, metric):
    trials = ResultsStore(root).read("demo", "trials", filters={"fold_id": "lodo:cpsc", "arm": "search"})
    scored = trials[trials.status.isin(schema.SCORED_STATUSES)].dropna(subset=["selection_value"])

    ranked = figures_sweeps.ranked(trials.assign(selection_metric=metric), figures_sweeps.direction_of(metric))

    best = scored.selection_value.max() if metric_mode(metric) == "max" else scored.selection_value.min()
    assert ranked.selection_value.iloc[0] == pytest.approx(best) and len(ranked) == len(scored)


def test_sweeps_follow_the_selection_metric_the_store_holds(views, root, tmp_path):
    shutil.copytree(root, tmp_path / "root")
    trials = ResultsStore(root).read("demo", "trials", filters={"fold_id": "lodo:georgia", "arm": "search"})
    ResultsWriter(tmp_path / "root" / "demo").write("trials", trials.assign(
        selection_metric="val_loss", selection_value=trials["val_macro_auroc"].rsub(1.0)))

    maximised = views.sweeps("demo", "lodo", "lodo:georgia")
    minimised = Views(ResultsStore(tmp_path / "root")).sweeps("demo", "lodo", "lodo:georgia")

    assert maximised.curves.layout.yaxis.title.text == "val macro auroc"
    assert minimised.curves.layout.yaxis.title.text == "val loss"
    assert minimised.parallel.data[0].dimensions[0].label == "val_loss"
    # The colour scale of a minimised objective is reversed, so the best trials stay the dark ones.
    scales = [view.parallel.data[0].line for view in (maximised, minimised)]
    assert scales[0].colorbar.title.text == "val_macro_auroc" and scales[1].colorbar.title.text == "val_loss"
    assert not scales[0].reversescale and scales[1].reversescale


def test_sweep_figures_are_built_once_per_state_of_the_store(views, root):
    first = views.sweeps("demo", "lodo", "lodo:ptbxl")
    assert views.sweeps("demo", "lodo", "lodo:ptbxl").parallel is first.parallel

    ResultsWriter(root / "demo").write("trials", pd.DataFrame([dict(
        protocol="lodo", fold_id="lodo:ptbxl", arm="search", seed=0, selection="search", trial_id="late",
        status="completed", selection_value=0.99, **{"cfg.mixstyle.p": 0.5})]))

    assert views.sweeps("demo", "lodo", "lodo:ptbxl").parallel is not first.parallel


def test_a_record_is_drawn_as_twelve_leads_in_millivolts_against_seconds(views):
    options, first = views.record_options("demo", "lodo:cpsc")
    view = views.record("demo", "lodo:cpsc", first, True)

    leads = [t for t in view.ecg.data if t.type == "scatter"]
    assert [t.name for t in leads] == list(LEADS)
    assert max(leads[0].x) == pytest.approx(4.0, abs=0.01)  # 4 s at 250 Hz
    assert any(t.type == "heatmap" for t in view.ecg.data)
    assert "not leads" in view.gates.layout.title.text
    assert "misclassified" in options[0]["label"]


def test_each_score_bar_carries_its_class_s_decision_threshold(views, root):
    _, first = views.record_options("demo", "lodo:cpsc")
    view = views.record("demo", "lodo:cpsc", first, True)
    record_id, cls = first.split("|", 1)
    row = ResultsStore(root).read("demo", "record_views", filters={"fold_id": "lodo:cpsc", "record_id": record_id,
                                                                    "class": cls}).iloc[0]
    model = {k: row[k] for k in ("protocol", "fold_id", "arm", "seed", "selection", "trial_id")}
    stored = ResultsStore(root).read("demo", "class_metrics", filters={**model, "split": "test", "label_set": "noisy"})
    thresholds = dict(zip(stored["class"], stored["threshold"]))

    bars, ticks = view.probabilities.data[0], _trace(view.probabilities, "threshold")
    assert list(ticks.y) == list(bars.y)  # every bar shown has its threshold
    assert list(ticks.x) == pytest.approx([thresholds[c] for c in ticks.y])
    assert "decision threshold" in view.probabilities.layout.title.text


def test_the_attribution_overlay_can_be_switched_off(views):
    _, first = views.record_options("demo", "lodo:cpsc")

    view = views.record("demo", "lodo:cpsc", first, False)

    assert all(t.type == "scatter" for t in view.ecg.data)


def test_export_downloads_the_consensus_as_a_run_file(views):
    options, first = views.export_options("demo", "lodo")
    download = views.export_download("demo", "lodo", first)

    assert first == "consensus|val|search"
    assert options[0]["label"] == "consensus (val selection, not trained: a consensus of the folds' selections)"
    assert all("nan" not in o["label"] for o in options)
    assert yaml.safe_load(download["content"])["fold_id"] == "consensus"
    assert download["filename"] == "demo_consensus_val.yaml"
    fold = views.export_download("demo", "lodo", "lodo:cpsc|val")  # a choice without its arm: full's
    assert "/" not in fold["filename"] and ":" not in fold["filename"]


def test_export_offers_each_algorithm_arms_selection_after_fulls(tmp_path):
    from heartbeatai.analysis.consensus import best_config_rows
    from heartbeatai.config import TrialConfig
    from heartbeatai.run_file import RunFile
    from heartbeatai.results import ResultsWriter

    writer = ResultsWriter(tmp_path / "zoo")
    for arm, kind in (("search", "erm"), ("algorithm-vrex", "vrex")):
        run = RunFile(data={"path": "data"}, fold_id="lodo:cpsc", classes=("AF",),
                      trial=TrialConfig().with_overrides({"algorithm.kind": kind}))
        writer.write("best_configs", best_config_rows("zoo", "lodo", "lodo:cpsc", "val", run, "val_macro_auroc", 0.8,
                                                      arm=arm))
    views = Views(ResultsStore(str(tmp_path)))
    options, first = views.export_options("zoo", "lodo")
    assert [o["value"] for o in options] == ["lodo:cpsc|val|search", "lodo:cpsc|val|algorithm-vrex"]
    assert options[1]["label"].startswith("algorithm-vrex: lodo:cpsc")
    download = views.export_download("zoo", "lodo", options[1]["value"])
    assert yaml.safe_load(download["content"])["trial"]["algorithm"]["kind"] == "vrex"
    assert download["filename"] == "zoo_algorithm-vrex_lodo_cpsc_val.yaml"


@pytest.mark.parametrize("study", ["../../etc", "..", "demo/../../etc", "nope"])
def test_study_names_outside_the_root_are_refused(views, study):
    with pytest.raises(ViewInputError):
        views.degradation(study, "noisy")


def test_a_failing_view_answers_with_an_alert_not_a_server_error():
    outputs = [Output("x-status", "children"), Output("x-graph", "figure"), Output("x-table", "children")]

    def broken(*_):
        raise KeyError("no column named 'delta'")

    status, figure, table = callbacks._guarded(broken, outputs)()

    assert "could not draw this view" in _alert_texts(status)
    assert figure.layout.meta["message"].startswith("could not draw")
    assert table is callbacks.no_update


def test_corrupt_and_missing_tables_are_said_on_the_page(tmp_path):
    store_copy(tmp_path, n_folds=2, n_trials=10, classes=6, seeds=1)
    results = tmp_path / "demo" / "results"
    next((results / "degradation").glob("part-*.parquet")).write_bytes(b"PAR1 truncated")
    shutil.rmtree(results / "ablation_tests")
    views = Views(ResultsStore(tmp_path))

    degradation = views.degradation("demo", "noisy")
    ablations = views.ablations("demo", "lodo", None, "all", "auroc")

    assert "unreadable part" in _alert_texts(degradation.status)
    assert degradation.heatmap.layout.meta["message"].startswith("no degradation")
    assert "ablation_tests: not written yet" in _alert_texts(ablations.status)
    [listed] = [row for row in views.studies_page(0, None).rows if row["study"] == "demo"]
    assert listed["damaged tables"] == "degradation"


def test_a_study_in_progress_is_announced_and_refresh_reports_only_changes(tmp_path):
    make_store(tmp_path, n_folds=2, n_trials=20, classes=6, seeds=1, in_progress=True)
    views = Views(ResultsStore(tmp_path))

    study, signature, badge = views.refresh(None, None)
    assert study == "demo" and badge.children.startswith("live: ") and badge.color == "info"
    assert views.refresh("demo", signature)[1] is None
    assert "in progress" in _alert_texts(views.sweeps("demo", "lodo", "lodo:ptbxl").status)

    ResultsWriter(tmp_path / "demo").write("trials", pd.DataFrame([dict(
        protocol="lodo", fold_id="lodo:ptbxl", arm="search", seed=0, selection="search", trial_id="ptbxl-00019",
        status="completed", selection_value=0.9)]))
    assert views.refresh("demo", signature)[1] not in (None, signature)


def test_every_callback_output_exists_in_the_page_or_a_view(root):
    app = create_app(str(root), warm=False)
    page = str(app.layout()) + "".join(str(layout.view_body(view)) for view in layout.VIEWS)

    for key in app.callback_map:
        for output in key.strip(".").split("..."):
            component_id = output.rsplit(".", 1)[0]
            assert f"id='{component_id}'" in page, component_id


def test_a_forged_request_with_a_traversing_study_name_reads_nothing(root):
    client = create_app(str(root), warm=False).server.test_client()
    outputs = [("degradation-status", "children"), ("degradation-heatmap", "figure"), ("degradation-reference", "children"),
               ("decomposition-class", "options"), ("decomposition-domain", "options")]
    payload = {
        "output": "..." .join(f"{i}.{p}" for i, p in outputs).join(["..", ".."]),
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": "study", "property": "value", "value": "../../../etc"},
                   {"id": "signature", "property": "data", "value": None},
                   {"id": "label-set", "property": "value", "value": "noisy"}],
        "changedPropIds": ["study.value"], "state": [],
    }

    response = client.post("/_dash-update-component", json=payload)

    assert response.status_code == 200
    body = json.loads(response.data)["response"]
    assert "invalid study name" in json.dumps(body["degradation-status"])
    assert "root:" not in response.get_data(as_text=True)
    assert client.get("/assets/../../../../etc/passwd").status_code == 404
    assert client.get("/_dash-component-suites/..%2f..%2fetc/passwd").status_code == 404  # Dash alone answers 500


def test_a_token_guards_every_request_and_the_login_form_keeps_it_in_a_cookie(root):
    client = create_app(str(root), token="s3cret", warm=False).server.test_client()

    page = client.get("/")
    assert page.status_code == 401 and 'method="post" action="/_login"' in page.get_data(as_text=True)
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/?token=s3cret").status_code == 401  # never from the URL, where logs keep it
    assert client.post("/_login", data={"token": "wrong"}).status_code == 401
    login = client.post("/_login", data={"token": "s3cret"})
    assert login.status_code == 303 and login.headers["Location"] == "/"
    assert "HttpOnly" in login.headers["Set-Cookie"] and "SameSite=Strict" in login.headers["Set-Cookie"]
    assert client.get("/").status_code == 200 and client.get("/_dash-layout").status_code == 200  # the cookie
    other = create_app(str(root), token="s3cret", warm=False).server.test_client()
    assert other.get("/_dash-layout", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_views_are_answered_from_cache_until_the_study_writes_again(tmp_path):
    store_copy(tmp_path, n_folds=2, n_trials=10, classes=6, seeds=1)
    views = Views(ResultsStore(tmp_path))
    first = views.degradation("demo", "noisy")

    assert views.degradation("demo", "noisy") is first
    ResultsWriter(tmp_path / "demo").write("importances", pd.DataFrame([dict(
        protocol="lodo", fold_id="lodo:cpsc", param="lr", importance=0.5)]))
    assert views.degradation("demo", "noisy") is not first


def test_signed_attributions_are_shaded_around_zero_and_numbered_stages_named():
    from heartbeatai.dashboard.figures_ecg import ecg_figure, se_gates_figure

    signal = np.sin(np.linspace(0, 20, 500))[None, :].repeat(12, axis=0)
    figure = ecg_figure(signal, 250, attribution=signal * 0.01)  # integrated gradients: signed
    gates = se_gates_figure({"1": [0.2, 0.9], "2": [0.5, 0.5, 0.1]})

    shading = next(t for t in figure.data if t.type == "heatmap")
    assert (shading.zmin, shading.zmid, shading.zmax) == (-1, 0, 1)
    assert list(gates.data[0].y) == ["stage 1", "stage 2"]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    # An algorithm arm too, so that every table, algorithm_parts included, is written to be removed.
    arms = (*DEFAULT_ARMS, algorithm_arm(next(k for k in ALGORITHMS if k != DEFAULT_ALGORITHM)).name)
    make_store(root, n_folds=2, n_trials=12, classes=6, seeds=1, records_per_fold=6, record_views_per_fold=2,
               arms=arms)
    return root


def test_each_algorithms_rare_class_parts_are_shown_with_their_intervals(small_root):
    from heartbeatai.dashboard.figures import interval_text
    from heartbeatai.dashboard.views.ablations import RARE_PREVALENCE

    parts = ResultsStore(small_root).read("demo", "algorithm_parts", filters={"label_set": "noisy"})
    rare = parts[parts["train_prevalence"] < RARE_PREVALENCE].sort_values(
        ["train_prevalence", "class", "arm", "domain"], kind="stable")
    assert len(rare), "the fake store should have rare classes among its algorithm parts"
    shown = _table_rows(Views(ResultsStore(small_root)).ablations("demo", "lodo", None, "all", "auroc").tests,
                        "algorithm-rare-parts-table")
    assert len(shown) == len(rare)
    for cells, (_, row) in zip(shown, rare.iterrows()):
        assert cells[0] == row["class"] and cells[2] == row["domain"]
        assert cells[4:] == [interval_text(row[p], row[f"{p}_lo"], row[f"{p}_hi"], row["interval_reliable"],
                                           row["n_positives"]) for p in ("total", *schema.DEGRADATION_PARTS)]
    assert any("[" in cell for cells in shown for cell in cells[4:])  # intervals, not only counts


@pytest.mark.parametrize("table", sorted(schema.TABLES))
def test_every_view_draws_with_any_one_table_missing(small_root, tmp_path, table):
    shutil.copytree(small_root, tmp_path / "root")
    shutil.rmtree(tmp_path / "root" / "demo" / "results" / table)
    views = Views(ResultsStore(tmp_path / "root"))

    _, record = views.record_options("demo", "lodo:cpsc")
    _, export = views.export_options("demo", "lodo")
    views.decomposition("demo", "noisy", "AF", "cpsc")
    views.filter_options("demo")
    statuses = [views.studies("demo").status, views.degradation("demo", "noisy").status,
                views.ablations("demo", "lodo", None, "all", "f1").status, views.sweeps("demo", "lodo", "lodo:cpsc").status,
                views.record("demo", "lodo:cpsc", record, True).status, views.export_preview("demo", "lodo", export)[0]]

    said = " ".join(_alert_texts(status) for status in statuses)
    if table != "predictions":  # the one table no view draws from
        assert f"{table}: not written yet" in said


def test_classes_never_evaluated_in_any_domain_are_left_out_of_the_degradation_view(root, tmp_path):
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    store = ResultsStore(tmp_path)
    rows = store.read("demo", "degradation")
    never = rows["class"].iloc[0]
    blanked = rows.assign(total=np.where(rows["class"] == never, np.nan, rows["total"]))
    ResultsWriter(tmp_path / "demo").replace("degradation", blanked, where={})

    view = Views(store).degradation("demo", "noisy")

    assert never not in view.heatmap.data[0].y
    assert never not in [o["value"] for o in view.class_options]


def test_a_record_view_gives_the_class_explained_its_positives_and_an_interval_only_where_reliable(root, tmp_path):
    shutil.copytree(root, tmp_path / "root")
    store = ResultsStore(tmp_path / "root")
    _, first = Views(store).record_options("demo", "lodo:cpsc")
    record_id, cls = first.split("|")
    view = store.read("demo", "record_views", filters={"fold_id": "lodo:cpsc", "record_id": record_id, "class": cls}).iloc[0]
    where = {k: view[k] for k in ("protocol", "fold_id", "arm", "seed", "selection", "trial_id")}
    metrics = store.read("demo", "class_metrics", filters={**where, "split": "test", "class": cls})
    row = metrics.iloc[0]

    shown = str(Views(store).record("demo", "lodo:cpsc", first, True).labels)
    assert row["interval_reliable"] and f"{row['positives']} test positives" in shown
    assert f"F1 {row['f1']:.3f} [{row['f1_lo']:.3f}, {row['f1_hi']:.3f}]" in shown
    assert ("fell back" in shown) == bool(row["threshold_fallback"])

    ResultsWriter(tmp_path / "root" / "demo").write("class_metrics", metrics.assign(positives=3, interval_reliable=False))
    shown = str(Views(ResultsStore(tmp_path / "root")).record("demo", "lodo:cpsc", first, True).labels)
    assert "3 test positives" in shown and f"F1 {row['f1']:.3f} (3 pos., no interval)" in shown
    assert f"{row['f1_lo']:.3f}," not in shown


def _write_v1_part(results, table: str, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(results / table)
    (results / table).mkdir()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), results / table / "part-00000000000000000001-v1.parquet")


def test_a_store_written_by_results_schema_1_says_so_on_every_view(small_root, tmp_path):
    shutil.copytree(small_root, tmp_path / "root")
    results = tmp_path / "root" / "demo" / "results"
    (results / schema.VERSION_FILE).write_text(json.dumps({"schema_version": 1, "tables": sorted(schema.TABLES)}))
    # v1's analysis tables: other columns, other meanings.
    _write_v1_part(results, "degradation", pd.DataFrame([dict(
        study="demo", domain="cpsc", **{"class": "AF"}, metric="f1", label_set="noisy", intra=0.7, lodo=0.6, delta=-0.1,
        ranking_part=-0.05, threshold_part=-0.03, prevalence_part=-0.02, train_prevalence=0.1, test_prevalence=0.1)]))
    _write_v1_part(results, "ablation_tests", pd.DataFrame([dict(
        study="demo", protocol="lodo", arm="no-se", metric="macro_auroc", n_pairs=4, mean_diff=-0.01,
        wilcoxon_p=0.12, p_holm=0.5)]))
    views = Views(ResultsStore(tmp_path / "root"))

    _, record = views.record_options("demo", "lodo:cpsc")
    _, export = views.export_options("demo", "lodo")
    statuses = [views.studies("demo").status, views.degradation("demo", "noisy").status,
                views.ablations("demo", "lodo", None, "all", "auroc").status, views.sweeps("demo", "lodo", "lodo:cpsc").status,
                views.record("demo", "lodo:cpsc", record, True).status, views.export_preview("demo", "lodo", export)[0]]

    message = ("written by results schema 1: its analysis tables are not comparable; rerun the study (or "
               "`heartbeatai study analyse DIR` once it has validation predictions)")
    for status in statuses:
        assert _alert_texts(status).count(message) == 1
    assert views.degradation("demo", "noisy").heatmap.layout.meta["message"].startswith("no degradation")
    views.decomposition("demo", "noisy", None, None)  # draws (a message), never raises


def test_a_current_store_has_no_schema_alert(views):
    assert "results schema" not in _alert_texts(views.degradation("demo", "noisy").status)


@pytest.mark.parametrize("distinct, shown", [(None, False), (7, False), (8, True)])
def test_importances_are_drawn_only_when_enough_distinct_trials_completed(distinct, shown):
    from heartbeatai.dashboard.figures_sweeps import MIN_IMPORTANCE_TRIALS, importances_figure

    rows = pd.DataFrame(dict(param=["mixstyle.p", "lr"], importance=[0.6, 0.4]))
    if distinct is not None:
        rows["n_distinct_trials"] = distinct
    figure = importances_figure(rows)
    assert MIN_IMPORTANCE_TRIALS == 8
    assert (len(figure.data) == 1 and figure.data[0].type == "bar") is shown
    if not shown:
        text = figure.layout.meta["message"]  # the annotation wraps it over lines
        assert "not shown" in text and (distinct is None or f"rest on {distinct} distinct" in text)


def test_the_degradation_view_states_the_rare_against_common_contrast_the_analysis_stored(views, root):
    contrast = ResultsStore(root).read("demo", "rarity_contrast", filters={"label_set": "noisy"}).iloc[0]
    line = _shown(_by_id(views.degradation("demo", "noisy").reference, "degradation-rarity-contrast"))
    assert line.startswith(f"Rare against common: over {int(contrast['n_cells'])} class x domain cells")
    assert f"is {contrast['drop_rare']:+.3f} on the rarest third" in line
    assert f"95% interval [{contrast['contrast_lo']:+.3f}, {contrast['contrast_hi']:+.3f}]" in line


def test_a_renamed_study_opens_on_every_view_under_its_new_name(tmp_path):
    make_store(tmp_path, n_folds=2, n_trials=6, classes=4, seeds=1, records_per_fold=10, record_views_per_fold=1)
    (tmp_path / "demo").rename(tmp_path / "demo-2026")
    views = Views(ResultsStore(tmp_path))
    study = "demo-2026"

    _, record = views.record_options(study, "lodo:cpsc")
    _, export = views.export_options(study, "lodo")
    statuses = [views.studies(study).status, views.degradation(study, "noisy").status,
                views.ablations(study, "lodo", None, "all", "f1").status, views.sweeps(study, "lodo", "lodo:cpsc").status,
                views.record(study, "lodo:cpsc", record, True).status, views.export_preview(study, "lodo", export)[0]]

    assert _alert_texts(statuses).strip() == ""  # nothing skipped, nothing missing
    [listed] = views.studies_page(0, None).rows
    assert listed["study"] == study and listed["state"] == "finished" and listed["total"] > 0


def test_sweep_axes_follow_how_each_parameter_was_sampled():
    rng = np.random.default_rng(0)
    n = 200
    trials = pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(n)], "status": "completed", "selection_value": rng.uniform(0.6, 0.9, n),
        "cfg.optimizer.lr": 10 ** rng.uniform(-5, -2, n), "cfg.mixstyle.p": rng.uniform(0.0, 1.0, n),
        "cfg.loss.kind": rng.choice(["asl", "bce"], n), "cfg.epochs": 9, "cfg.mixstyle.alpha": np.nan})
    trials.loc[::2, "cfg.mixstyle.alpha"] = 0.1  # conditional: half the trials sampled it, with one value

    kinds = figures_sweeps.search_params(trials)
    parallel = figures_sweeps.parallel_coordinates_figure(trials, "val_macro_auroc", max_trials=50)

    assert kinds == {"optimizer.lr": "log", "mixstyle.p": "linear", "loss.kind": "categorical"}
    dimensions = {d.label: d for d in parallel.data[0].dimensions}
    assert list(dimensions) == ["val_macro_auroc", "optimizer.lr", "mixstyle.p", "loss.kind"]
    assert max(dimensions["optimizer.lr"].values) <= -2 and list(dimensions["loss.kind"].ticktext) == ["asl", "bce"]
    assert min(dimensions["val_macro_auroc"].values) >= np.sort(trials.selection_value)[-50]  # the best 50
    assert "best 50 of 200" in parallel.layout.title.text


def test_a_study_comparing_no_algorithms_is_not_told_its_algorithm_parts_are_coming(tmp_path):
    store_copy(tmp_path, n_folds=2, n_trials=6, classes=6, seeds=1, records_per_fold=4, record_views_per_fold=1)
    shutil.rmtree(tmp_path / "demo" / "results" / "algorithm_parts", ignore_errors=True)
    views = Views(ResultsStore(tmp_path))
    assert not any(algorithm_of(arm) for arm in ResultsStore(tmp_path).read("demo", "fold_metrics")["arm"].unique())
    assert "algorithm_parts" not in _alert_texts(views.ablations("demo", "lodo", None, "all", "auroc").status)


def test_a_long_empty_figure_message_is_wrapped_not_cut_off():
    from heartbeatai.dashboard.figures import message_figure

    text = ("importances not shown: they rest on 4 distinct completed trial(s), and below 8 their ranking "
            "is noise; run more trials per fold to see them")
    figure = message_figure(text)
    shown = figure.layout.annotations[0].text.split("<br>")
    assert len(shown) > 1 and max(map(len, shown)) <= 55
    assert " ".join(shown) == text and figure.layout.meta["message"] == text


def _heat_map_cells_are_the_class_tests(figure, tests: pd.DataFrame) -> int:
    effect = _trace(figure, "effect")
    tests = tests.set_index(["arm", "class"])
    assert figure.layout.meta["decided"] and "Holm" in figure.layout.title.text
    checked = 0
    for i, arm in enumerate(effect.y):
        for j, name in enumerate(effect.x):
            if (arm, name) in tests.index and effect.z[i][j] is not None and np.isfinite(effect.z[i][j]):
                row = tests.loc[(arm, name)]
                assert effect.z[i][j] == pytest.approx(row["diff"])
                assert effect.text[i][j] == figures_ablations.DECISION_MARKS.get(row["decision"], "")
                assert f"[{row['diff_lo']:+.3f}, {row['diff_hi']:+.3f}]" in effect.customdata[i][j]
                checked += 1
    return checked


def test_the_rare_class_heat_map_draws_the_class_tests_with_their_holm_decisions(views, root):
    tests = ResultsStore(root).read("demo", "class_tests", filters={"protocol": "lodo", "metric": "auroc"})
    across = views.ablations("demo", "lodo", None, "all", "auroc").rare_effects
    assert _heat_map_cells_are_the_class_tests(across, tests[tests["fold_id"] == "all"]) > 0
    assert "across domains" in across.layout.title.text and "arm × class of" in across.layout.title.text
    # Narrowed to one held-out domain: that domain's own comparisons, in their own Holm family.
    options, kept = views.rare_domains("demo", "lodo", "lodo:nowhere")
    assert kept is None and [o["value"] for o in options] == sorted(set(tests["fold_id"]) - {"all"})
    domain = options[0]["value"]
    assert views.rare_domains("demo", "lodo", domain)[1] == domain
    one = views.ablations("demo", "lodo", None, "all", "auroc", domain).rare_effects
    mine = tests[tests["fold_id"] == domain]
    assert set(mine["family"]) == {"per-class per-domain"} and (mine["n_folds"] == 1).all()
    assert _heat_map_cells_are_the_class_tests(one, mine) > 0
    assert f"on {domain}" in one.layout.title.text and "arm × class × domain" in one.layout.title.text
    # One seed chosen: the decisions pool every seed, so the map is the descriptive one.
    one_seed = views.ablations("demo", "lodo", None, 1, "auroc").rare_effects
    assert not one_seed.layout.meta["decided"] and "descriptive" in one_seed.layout.title.text
