"""The registries (metrics, arms, leads, domains, protocols, trial statuses, degradation parts,
the results tables) are the only declaration of their concept, and each entry reaches the
places it configures. Every test is parametrised over a registry: a new entry is tested the
day it is registered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from heartbeatai import ecg
from heartbeatai.analysis.ablation_tests import ComparisonSettings, ablation_test_rows
from heartbeatai.analysis.degradation_split import ScoredRecords, split_parts, three_evaluations
from heartbeatai.analysis.evaluation import prediction_rows
from heartbeatai.arms import ALIASES, BUILTIN_ARMS, DEFAULT_ARMS, FULL, canonical_arm, resolve_arms
from heartbeatai.cli import main as cli_main
from heartbeatai.config import TrialConfig, flatten_config
from heartbeatai.dashboard import figures, figures_degradation, figures_ecg
from heartbeatai.data.domains import FOLDER_DOMAINS, folder_domain, prefix_domain
from heartbeatai.data.folds import fold_ids
from heartbeatai.data.raw_record import RecordError, standard_lead_order
from heartbeatai.data.synthetic.domains import default_profiles
from heartbeatai.metric_names import (
    CLASS_METRICS, EPOCH_COLUMNS, FOLD_METRICS, VALIDATION_METRICS, fold_metric_of, metric_mode,
)
from heartbeatai.metrics import evaluate_predictions
from heartbeatai.protocols import PROTOCOLS, REGISTRY as PROTOCOL_REGISTRY, parse_fold_id
from heartbeatai.results import ResultsStore, ResultsWriter, schema
from heartbeatai.results.schema import RUN_KEY, TABLES, RunKey, table
from heartbeatai.results.summary import compute_summary
from heartbeatai.study.study_config import ConfigError, parse_study_config
from heartbeatai.testing.fake_store import make_store
from train_fixtures import write_planted_dataset

MINIMAL = {"name": "s", "data": {"path": "/prepared"}}


# ------------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_every_validation_metric_has_a_column_in_the_trials_and_epochs_tables(metric):
    assert metric in table("trials").columns
    assert metric in table("epochs").columns
    assert metric in EPOCH_COLUMNS


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_every_validation_metric_selects_in_the_direction_it_improves(metric):
    loaded = parse_study_config({**MINIMAL, "selection": {"metric": metric, "oracle": fold_metric_of(metric) is not None}})
    assert loaded.selection.mode == metric_mode(metric)
    wrong = "max" if metric_mode(metric) == "min" else "min"
    with pytest.raises(ConfigError, match="selection.mode"):
        parse_study_config({**MINIMAL, "selection": {"metric": metric, "mode": wrong, "oracle": False}})


@pytest.fixture(scope="module")
def good_and_poor_evaluations():
    """The same records scored by a model that separates the classes well and by a poor one."""
    rng = np.random.default_rng(0)
    classes = ["AF", "RBBB", "LBBB", "PAC"]
    y = rng.random((400, len(classes))) < np.array([0.3, 0.2, 0.1, 0.15])
    good = 1 / (1 + np.exp(-(4.0 * y - 2.0 + rng.normal(0, 0.8, y.shape))))
    poor = 1 / (1 + np.exp(-(0.6 * y - 1.0 + rng.normal(0, 1.5, y.shape))))
    return [evaluate_predictions(y, scores, np.full(len(classes), 0.5), classes) for scores in (good, poor)]


@pytest.mark.parametrize("metric", list(FOLD_METRICS))
def test_every_fold_metric_is_computed_and_the_better_model_wins_in_its_direction(metric, good_and_poor_evaluations):
    good, poor = (result.macro[metric] for result in good_and_poor_evaluations)
    assert (good > poor) if metric_mode(metric) == "max" else (good < poor)


@pytest.mark.parametrize("metric", list(CLASS_METRICS))
def test_every_class_metric_is_computed_and_the_better_model_wins_in_its_direction(metric, good_and_poor_evaluations):
    good, poor = (result.per_class[metric].to_numpy() for result in good_and_poor_evaluations)
    assert np.all(good > poor) if metric_mode(metric) == "max" else np.all(good < poor)


@pytest.mark.parametrize("metric", list(FOLD_METRICS))
def test_every_fold_metric_is_an_allowed_value_of_fold_metrics_and_has_a_validation_twin(metric):
    assert metric in table("fold_metrics").allowed["metric"]
    assert fold_metric_of(f"val_{metric}") == metric


@pytest.mark.parametrize("metric", list(CLASS_METRICS))
def test_every_class_metric_has_a_value_and_an_interval_column(metric):
    columns = table("class_metrics").columns
    assert {metric, f"{metric}_lo", f"{metric}_hi"} <= set(columns)


def test_a_metric_that_no_epoch_records_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="selection.metric: 'val_accuracy' is not recorded"):
        parse_study_config({**MINIMAL, "selection": {"metric": "val_accuracy"}})


def test_the_oracle_needs_a_test_set_counterpart_of_the_selection_metric():
    assert fold_metric_of("val_loss") is None
    with pytest.raises(ConfigError, match="selection.oracle"):
        parse_study_config({**MINIMAL, "selection": {"metric": "val_loss"}})
    assert parse_study_config({**MINIMAL, "selection": {"metric": "val_loss", "oracle": False}}).selection.mode == "min"


# ------------------------------------------------------------------------------ arms


@pytest.mark.parametrize("name", list(BUILTIN_ARMS))
def test_every_builtin_arm_overrides_real_keys_of_the_trial_config(name):
    arm = BUILTIN_ARMS[name]
    keys = set(flatten_config(TrialConfig()))
    assert set(arm.overrides) <= keys
    changed = TrialConfig().with_overrides(dict(arm.overrides))
    assert (changed == TrialConfig()) == (not arm.overrides)
    assert name in DEFAULT_ARMS


@pytest.fixture(scope="module")
def every_arm_tested():
    """The analysis' ablation tests of every built-in arm against `full`, three seeds on two domains."""
    rng = np.random.default_rng(0)
    classes, predictions, metrics = ["AF", "RBBB"], [], []
    for domain in ("alpha", "beta"):
        y = rng.random((60, len(classes))) < 0.3
        ids = [f"{domain}{i:03d}" for i in range(len(y))]
        for arm in BUILTIN_ARMS:
            for seed in (1, 2, 3):
                key = {"study": "s", "protocol": "lodo", "fold_id": f"lodo:{domain}", "arm": arm, "seed": seed,
                       "selection": "val", "trial_id": f"{domain}-{arm}-{seed}"}
                scores = 1 / (1 + np.exp(-(1.5 * y + rng.normal(size=y.shape))))
                predictions.append(prediction_rows(ids, [domain] * len(y), scores, y, classes, key, "test"))
                metrics += [{**key, "split": "test", "label_set": "noisy", "class": c, "threshold": 0.5} for c in classes]
    settings = ComparisonSettings(n_boot=20, seed=0, rope=0.01, decision_probability=0.95)
    return ablation_test_rows(pd.concat(predictions, ignore_index=True), pd.DataFrame(metrics), "s", settings)


@pytest.mark.parametrize("name", [a for a in BUILTIN_ARMS if a != FULL])
def test_every_arm_is_tested_inside_a_declared_family_and_references_are_flagged(name, every_arm_tested):
    rows = every_arm_tested[every_arm_tested["arm"] == name]
    assert set(rows["scope"]) == {"fold", "across"} and rows["p_value"].notna().all()
    assert set(rows["family"]) <= {"confirmatory", "exploratory"}
    claimed = rows[rows["claim"].isin(["better", "worse", "equivalent"])]
    assert len(claimed) and claimed["p_holm"].notna().all()
    # The plain-ResNet baseline and the prevalence floor are decided like every arm, shown apart.
    assert (rows["reference"] == (not BUILTIN_ARMS[name].ablation)).all()


@pytest.mark.parametrize(("alias", "canonical"), list(ALIASES.items()))
def test_older_arm_spellings_read_as_the_canonical_ones(alias, canonical, tmp_path):
    assert canonical in BUILTIN_ARMS and canonical_arm(alias) == canonical
    assert [a.name for a in resolve_arms(["full", alias], {})] == ["full", canonical]
    assert parse_study_config({**MINIMAL, "arms": ["full", alias]}).arms == ["full", canonical]
    key = RunKey("s", "lodo", "lodo:a", alias, 1, "val", "t1").as_dict()
    ResultsWriter(tmp_path / "s").write("trials", pd.DataFrame([{**key, "status": "completed"}]))
    assert ResultsStore(str(tmp_path)).read("s", "trials")["arm"].tolist() == [canonical]


# ------------------------------------------------------------------------------ results tables


RUN = RunKey("s", "intra", "intra:a:0", "no-se", 2, "val", "t7")


def _value(column: str, dtype: pa.DataType, allowed: dict[str, tuple[str, ...]]):
    if column in RUN_KEY:
        return getattr(RUN, column)
    if column in allowed:
        return allowed[column][-1]
    return {pa.string(): f"{column}-value", pa.int64(): 3, pa.float64(): 0.25, pa.bool_(): True}[dtype]


@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_takes_a_row_built_from_its_declaration_and_reads_it_back_whole(name, tmp_path):
    declared = table(name)
    row = {column: _value(column, dtype, declared.allowed) for column, dtype in declared.columns.items()
           if column != "study"}  # the writer fills the study from the folder's name
    ResultsWriter(tmp_path / "s").write(name, pd.DataFrame([row]))

    [read] = ResultsStore(tmp_path).read("s", name).to_dict("records")
    assert read == {**row, "study": "s"}
    if declared.identity[:len(RUN_KEY)] == RUN_KEY:  # a per-run table: its rows carry the run key first
        assert {k: read[k] for k in RUN_KEY} == RUN.as_dict()


# ------------------------------------------------------------------------------ leads and domains


@pytest.mark.parametrize("lead", ecg.LEADS)
def test_every_lead_lands_in_its_column_and_is_drawn_under_its_name(lead):
    listed = [name.lower() for name in reversed(ecg.LEADS)] + ["vx"]  # a source's own order, an extra lead
    source = np.arange(len(listed), dtype=float)[None, :].repeat(50, axis=0)  # column j holds j
    signal = source[:, standard_lead_order(listed)].T

    drawn = {trace.name: trace for trace in figures_ecg.ecg_figure(signal, fs=100).data}
    assert set(drawn) == set(ecg.LEADS) and len(signal) == ecg.N_LEADS
    assert np.all(np.asarray(drawn[lead].y) == listed.index(lead.lower()))
    with pytest.raises(RecordError, match=f"missing standard leads {lead}"):
        standard_lead_order([name for name in listed if name != lead.lower()])


@pytest.mark.parametrize("domain", ecg.DOMAINS)
def test_every_known_domain_is_reached_from_a_folder_or_a_record_name(domain):
    from pathlib import Path

    by_folder = {folder_domain(Path("/data") / name / "A0001.hea") for name in FOLDER_DOMAINS}
    by_name = {prefix_domain(record) for record in ("A0001", "Q0001", "E00001", "HR00001", "I01", "S0001",
                                                    "JS00001", "JS10647")}
    assert domain in by_folder | by_name


@pytest.mark.parametrize("domain", ecg.PAPER_DOMAINS)
def test_every_paper_domain_is_a_synthetic_hospital_the_default_study_generates(domain):
    assert domain in default_profiles()
    defaults = parse_study_config({"name": "s", "data": {"synthetic": {"records": 10}}}).data.synthetic
    assert domain in defaults.domains


# ------------------------------------------------------------------------------ protocols


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=24, seconds=2.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_is_planned_by_the_cli_and_its_fold_ids_read_back(protocol, planted):
    assert cli_main(["data", "folds", str(planted), "--protocol", protocol, "--k", "3"]) == 0

    ids = fold_ids(planted, protocol)
    assert ids and all(parse_fold_id(f).protocol == protocol and str(parse_fold_id(f)) == f for f in ids)
    parts = {parse_fold_id(f).part for f in ids}
    assert (None not in parts) == PROTOCOL_REGISTRY[protocol].cross_fitted


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_is_a_study_protocol_whose_folds_train_the_arms_it_declares(protocol, tmp_path):
    config = parse_study_config({**MINIMAL, "protocols": [protocol]})
    trained = [arm.name for arm in config.fold_arms(protocol)]
    assert trained == (config.arms if PROTOCOL_REGISTRY[protocol].trains_every_arm else [FULL])

    key = RunKey("s", protocol, "x", FULL, 1, "val", "t1").as_dict()
    ResultsWriter(tmp_path / "s").write("trials", pd.DataFrame([{**key, "status": "completed"}]))
    assert ResultsStore(tmp_path).read("s", "trials")["protocol"].tolist() == [protocol]


def test_a_fold_id_off_the_grammar_is_refused_naming_every_protocols_form():
    with pytest.raises(ValueError) as refused:
        parse_fold_id("lodo:cpsc:1")
    assert all(f"{p}:<domain>" in str(refused.value) for p in PROTOCOLS)


# ------------------------------------------------------------------------------ trial statuses


@pytest.mark.parametrize("status", schema.TRIAL_STATUSES)
def test_every_trial_status_is_counted_summarised_and_drawn(status, tmp_path):
    key = RunKey("s", "lodo", "lodo:a", "search", 0, "search", "t1").as_dict()
    ResultsWriter(tmp_path / "s").write("trials", pd.DataFrame([{**key, "status": status}]))
    store = ResultsStore(tmp_path)

    progress = store.progress("s")
    assert progress[status].sum() == 1 == progress["total"].sum()
    summary = compute_summary(store, "s")
    assert summary["trials"][status] == 1
    assert summary["state"] == ("running" if status in schema.ACTIVE_STATUSES else "finished")
    [bar] = [t for t in figures.progress_figure(progress).data if t.name == status.replace("_", " ")]
    assert list(bar.x) == [1] and bar.marker.color == figures.STATUS_COLOURS[status]


# ------------------------------------------------------------------------------ degradation parts


@pytest.fixture(scope="module")
def degradation_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    make_store(root, n_folds=2, n_trials=6, classes=6, seeds=1, records_per_fold=6, record_views_per_fold=1)
    return ResultsStore(root).read("demo", "degradation", filters={"label_set": "noisy"})


@pytest.mark.parametrize("part", [schema.DEGRADATION_TOTAL, *schema.DEGRADATION_PARTS])
def test_every_degradation_part_is_split_stored_and_drawn(part, degradation_rows):
    y = np.array([[True], [False], [True], [False]])
    model = ScoredRecords(np.array([[0.9], [0.2], [0.6], [0.4]]), np.full((4, 1), 0.5),
                          np.array([[True], [False], [True], [False]]), np.full((4, 1), 0.5))
    evaluations = three_evaluations(y, model, np.ones((1, 4)))
    assert set(split_parts(evaluations, evaluations)) == {schema.DEGRADATION_TOTAL, *schema.DEGRADATION_PARTS}
    assert {part, f"{part}_lo", f"{part}_hi"} <= set(table("degradation").columns)

    domain = degradation_rows["domain"].iloc[0]
    rows = degradation_rows[degradation_rows["domain"] == domain]
    drawn = figures_degradation.parts_figure(rows, list(rows["class"]), domain)
    label = figures_degradation.PART_NAMES.get(part, part)  # the total is drawn as markers beside the bars
    shown = {c: x for t in drawn.data if t.name.startswith(label) for c, x in zip(t.y, t.x)}
    assert shown == pytest.approx(rows.set_index("class")[part].to_dict())
