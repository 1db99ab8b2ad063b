"""The dashboard's views and callbacks, called as functions on a small generated store."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from dash import Output

from heartbeatai.dashboard import callbacks, layout
from heartbeatai.dashboard.app import create_app
from heartbeatai.dashboard.figures_ecg import LEADS
from heartbeatai.dashboard.views import ViewInputError, Views
from heartbeatai.results import ResultsStore, ResultsWriter, schema
from heartbeatai.testing.fake_store import make_store


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    make_store(root, n_folds=3, n_trials=45, seeds=2, records_per_fold=20, record_views_per_fold=4)
    return root


@pytest.fixture
def views(root):
    return Views(ResultsStore(root))


def _alert_texts(components) -> str:
    return " ".join(str(c.children) for c in components)


def test_degradation_heatmap_is_lodo_minus_intra_with_the_rarest_classes_together(views, root):
    view = views.degradation("demo", "auroc", "noisy")
    heatmap = view.heatmap.data[0]
    rows = ResultsStore(root).read("demo", "degradation", filters={"metric": "auroc", "label_set": "noisy"})

    prevalence = rows.groupby("class")["train_prevalence"].mean()
    assert list(heatmap.y) == list(prevalence.sort_values().index)
    cell = rows[(rows["class"] == heatmap.y[0]) & (rows["domain"] == heatmap.x[0])].iloc[0]
    assert heatmap.z[0][0] == pytest.approx(cell.lodo - cell.intra)
    assert list(heatmap.customdata[0][0][:6]) == pytest.approx([cell.intra, cell.intra_lo, cell.intra_hi,
                                                                cell.lodo, cell.lodo_lo, cell.lodo_hi])
    assert heatmap.zmid == 0
    assert [o["value"] for o in view.class_options] == list(heatmap.y)


def test_the_metric_filter_switches_the_degradation_figures(views):
    auroc, f1 = views.degradation("demo", "auroc", "noisy"), views.degradation("demo", "f1", "noisy")

    assert "AUROC" in auroc.heatmap.data[0].colorbar.title.text and "F1" in f1.heatmap.data[0].colorbar.title.text
    assert not np.allclose(np.asarray(auroc.heatmap.data[0].z, float), np.asarray(f1.heatmap.data[0].z, float))


def test_the_decomposition_shows_the_f1_drop_beside_its_three_diagnostics_whatever_the_metric(views, root):
    row = ResultsStore(root).read("demo", "degradation", filters={"metric": "f1", "label_set": "noisy", "class": "AF",
                                                     "domain": "ptbxl"}).iloc[0]
    for metric in ("f1", "auroc"):
        bars = views.decomposition("demo", metric, "noisy", "AF", "ptbxl").data[0]

        assert list(bars.x) == ["ranking (AUROC)", "threshold transfer", "prevalence shift", "F1 change"]
        assert list(bars.y) == pytest.approx([row["ranking_part"], row["threshold_part"], row["prevalence_part"],
                                              row["delta"]])


def test_a_heatmap_click_picks_the_class_and_domain_to_decompose():
    assert Views.picked_cell({"points": [{"x": "cpsc", "y": "PAC", "z": -0.1}]}) == ("PAC", "cpsc")
    assert Views.picked_cell(None) == (None, None)


def test_ablations_show_each_arm_per_fold_and_overall_and_the_paired_tests(views):
    view = views.ablations("demo", "lodo", None, "all", "auroc")

    arms = [trace.name for trace in view.arms.data]
    assert arms[0] == "full" and arms[-1] == "prevalence"
    assert list(view.arms.data[0].x) == ["lodo:cpsc", "lodo:georgia", "lodo:ptbxl", "overall"]
    table = str(view.tests)
    assert "p_holm" in table and "no-mixstyle" in table


def test_the_arm_and_seed_filters_narrow_the_ablation_view_but_keep_the_prevalence_floor(views):
    view = views.ablations("demo", "lodo", ["full", "no-se", "prevalence"], 1, "f1")

    assert [trace.name for trace in view.arms.data] == ["full", "no-se", "prevalence"]
    assert "no-mixstyle" not in str(view.tests)


def test_per_class_effects_cover_only_rare_classes(views, root):
    view = views.ablations("demo", "lodo", None, "all", "auroc")
    effects = view.rare_effects.data[0]
    classes = ResultsStore(root).read("demo", "class_metrics", filters={"protocol": "lodo"})
    prevalence = classes.groupby("class")["train_prevalence"].mean()

    assert set(effects.x) and all(prevalence[c] < 0.02 for c in effects.x)
    assert "full" not in set(effects.y) and "prevalence" not in set(effects.y)


def test_sweeps_rebuild_the_optuna_study_and_mark_asha_stopped_trials(views, root):
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


def test_the_attribution_overlay_can_be_switched_off(views):
    _, first = views.record_options("demo", "lodo:cpsc")

    view = views.record("demo", "lodo:cpsc", first, False)

    assert all(t.type == "scatter" for t in view.ecg.data)


def test_export_downloads_the_consensus_as_a_run_file(views):
    options, first = views.export_options("demo", "lodo")
    download = views.export_download("demo", "lodo", first)

    assert first == "consensus|val"
    assert yaml.safe_load(download["content"])["fold_id"] == "consensus"
    assert download["filename"] == "demo_consensus_val.yaml"
    fold = views.export_download("demo", "lodo", "lodo:cpsc|val")
    assert "/" not in fold["filename"] and ":" not in fold["filename"]


@pytest.mark.parametrize("study", ["../../etc", "..", "demo/../../etc", "nope"])
def test_study_names_outside_the_root_are_refused(views, study):
    with pytest.raises(ViewInputError):
        views.degradation(study, "auroc", "noisy")


def test_a_failing_view_answers_with_an_alert_not_a_server_error():
    outputs = [Output("x-status", "children"), Output("x-graph", "figure"), Output("x-table", "children")]

    def broken(*_):
        raise KeyError("no column named 'delta'")

    status, figure, table = callbacks._guarded(broken, outputs)()

    assert "could not draw this view" in _alert_texts(status)
    assert figure.layout.meta["message"].startswith("could not draw")
    assert table is callbacks.no_update


def test_corrupt_and_missing_tables_are_said_on_the_page(tmp_path):
    make_store(tmp_path, n_folds=2, n_trials=10, classes=6, seeds=1)
    results = tmp_path / "demo" / "results"
    next((results / "degradation").glob("part-*.parquet")).write_bytes(b"PAR1 truncated")
    shutil.rmtree(results / "ablation_tests")
    views = Views(ResultsStore(tmp_path))

    degradation = views.degradation("demo", "auroc", "noisy")
    ablations = views.ablations("demo", "lodo", None, "all", "auroc")

    assert "unreadable part" in _alert_texts(degradation.status)
    assert degradation.heatmap.layout.meta["message"].startswith("no degradation")
    assert "ablation_tests: not written yet" in _alert_texts(ablations.status)
    assert "damaged tables" in str(views.studies("demo").studies_table) and "degradation" in str(
        views.studies("demo").studies_table)


def test_a_study_in_progress_is_announced_and_refresh_reports_only_changes(tmp_path):
    make_store(tmp_path, n_folds=2, n_trials=20, classes=6, seeds=1, in_progress=True)
    views = Views(ResultsStore(tmp_path))

    options, study, signature, badge = views.refresh(None, None)
    assert study == "demo" and "live" in str(badge.children)
    assert views.refresh("demo", signature)[2] is None
    assert "in progress" in _alert_texts(views.sweeps("demo", "lodo", "lodo:ptbxl").status)

    ResultsWriter(tmp_path / "demo").write("trials", pd.DataFrame([dict(
        protocol="lodo", fold_id="lodo:ptbxl", arm="search", seed=0, selection="search", trial_id="ptbxl-00019",
        status="completed", selection_value=0.9)]))
    assert views.refresh("demo", signature)[2] not in (None, signature)


def test_every_callback_output_exists_in_the_page_or_a_view(root):
    app = create_app(str(root), warm=False)
    page = str(app.layout()) + "".join(str(layout.view_body(view)) for view in layout.VIEWS)

    for key in app.callback_map:
        for output in key.strip(".").split("..."):
            component_id = output.rsplit(".", 1)[0]
            assert f"id='{component_id}'" in page, component_id


def test_a_forged_request_with_a_traversing_study_name_reads_nothing(root):
    client = create_app(str(root), warm=False).server.test_client()
    outputs = [("degradation-status", "children"), ("degradation-heatmap", "figure"), ("degradation-scatter", "figure"),
               ("decomposition-class", "options"), ("decomposition-domain", "options")]
    payload = {
        "output": "..." .join(f"{i}.{p}" for i, p in outputs).join(["..", ".."]),
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": "study", "property": "value", "value": "../../../etc"},
                   {"id": "signature", "property": "data", "value": None},
                   {"id": "metric", "property": "value", "value": "auroc"},
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
    make_store(tmp_path, n_folds=2, n_trials=10, classes=6, seeds=1)
    views = Views(ResultsStore(tmp_path))
    first = views.degradation("demo", "auroc", "noisy")

    assert views.degradation("demo", "auroc", "noisy") is first
    ResultsWriter(tmp_path / "demo").write("importances", pd.DataFrame([dict(
        protocol="lodo", fold_id="lodo:cpsc", param="lr", importance=0.5)]))
    assert views.degradation("demo", "auroc", "noisy") is not first


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
    make_store(root, n_folds=2, n_trials=12, classes=6, seeds=1, records_per_fold=6, record_views_per_fold=2)
    return root


@pytest.mark.parametrize("table", sorted(schema.TABLES))
def test_every_view_draws_with_any_one_table_missing(small_root, tmp_path, table):
    shutil.copytree(small_root, tmp_path / "root")
    shutil.rmtree(tmp_path / "root" / "demo" / "results" / table)
    views = Views(ResultsStore(tmp_path / "root"))

    _, record = views.record_options("demo", "lodo:cpsc")
    _, export = views.export_options("demo", "lodo")
    views.decomposition("demo", "auroc", "noisy", "AF", "cpsc")
    views.filter_options("demo")
    statuses = [views.studies("demo").status, views.degradation("demo", "auroc", "noisy").status,
                views.ablations("demo", "lodo", None, "all", "f1").status, views.sweeps("demo", "lodo", "lodo:cpsc").status,
                views.record("demo", "lodo:cpsc", record, True).status, views.export_preview("demo", "lodo", export)[0]]

    said = " ".join(_alert_texts(status) for status in statuses)
    if table != "predictions":  # the one table no view draws from
        assert f"{table}: not written yet" in said


def test_classes_never_evaluated_in_any_domain_are_left_out_of_the_degradation_view(tmp_path):
    make_store(tmp_path, n_folds=3, n_trials=6, seeds=1, records_per_fold=20, record_views_per_fold=1)
    store = ResultsStore(tmp_path)
    rows = store.read("demo", "degradation")
    never = rows["class"].iloc[0]
    blanked = rows.assign(**{c: np.where(rows["class"] == never, np.nan, rows[c]) for c in ("intra", "lodo")})
    ResultsWriter(tmp_path / "demo").replace("degradation", blanked, where={})

    view = Views(store).degradation("demo", "auroc", "noisy")

    assert never not in view.heatmap.data[0].y
    assert never not in [o["value"] for o in view.class_options]
