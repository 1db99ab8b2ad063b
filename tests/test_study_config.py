"""Study configuration: validation names the key; shipped configs validate; spaces become Optuna's."""

from __future__ import annotations

from pathlib import Path

import optuna.distributions as od
import pytest
import yaml

from heartbeatai.arms import BUILTIN_ARMS, resolve_arms
from heartbeatai.study.search_space import DEFAULT_SPACE, Distribution, optuna_space
from heartbeatai.study.study_config import ConfigError, load_study_config, parse_study_config

CONFIGS = Path(__file__).resolve().parents[1] / "studies" / "configs"
MINIMAL = {"name": "s", "data": {"path": "/prepared"}}


def config(**fields):
    return parse_study_config({**MINIMAL, **fields})


# studies/configs holds study configs and, named run_*.yaml, example run files.
STUDY_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("run_"))


@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_study_config_validates(path):
    loaded = load_study_config(path)
    assert loaded.name == path.stem


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("run_*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_run_file_validates_and_names_its_data_relative_to_itself(path):
    from heartbeatai.run_file import RunFile

    run = RunFile.load(path)
    assert Path(run.data.path) == (path.parent / yaml.safe_load(path.read_text())["data"]["path"]).resolve()
    assert not Path(yaml.safe_load(path.read_text())["data"]["path"]).is_absolute()


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"search": {"space": {"mixstyle.q": {"uniform": [0, 1]}}}}, "search.space.mixstyle.q"),
        ({"search": {"space": {"optim.lr": {"loguniform": [0, 1]}}}}, "search.space.optim.lr"),
        ({"search": {"space": {"mixstyle.p": {"uniform": [0, 1], "choice": [0.1]}}}}, "search.space.mixstyle.p"),
        ({"arms": ["full", "no-attention"]}, "arms[1]"),
        ({"arms": ["no-se"]}, "must include 'full'"),
        ({"user_arms": {"wide": {"model.se": "maybe"}}}, "user_arms.wide: model.se"),
        ({"user_arms": {"no-se": {"model.se": False}}}, "redefines built-in"),
        ({"trial": {"mixstyle": {"p": 2}}}, "trial.mixstyle.p"),
        ({"resources": {"workers": 0}}, "resources.workers"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"tracking": "wandb"}, "tracking"),
        ({"protocol": ["lodo"]}, "protocol"),
        ({"storage": "s3://bucket/runs"}, "storage"),
    ],
)
def test_invalid_config_errors_name_the_key(fields, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config(**fields)


def test_data_needs_exactly_one_source():
    with pytest.raises(ConfigError, match="exactly one of data.path"):
        parse_study_config({"name": "s", "data": {}})
    with pytest.raises(ConfigError, match="exactly one of data.path"):
        parse_study_config({"name": "s", "data": {"path": "/p", "synthetic": {"records": 10}}})


def test_defaults_follow_the_design():
    loaded = config()
    assert loaded.protocols == ["lodo"] and loaded.folds.domains is None
    assert set(loaded.search.space) == {"mixstyle.p", "label_smoothing", "loss.kind"}
    assert loaded.arms == list(BUILTIN_ARMS)
    assert loaded.selection.metric == "val_macro_auroc" and loaded.selection.method == "val"
    assert loaded.tracking is None


def test_mlflow_tracking_is_an_optional_extra(monkeypatch):
    import importlib.util

    assert config(tracking="mlflow").tracking.kind == "mlflow"  # the test extra installs it
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "mlflow" else real(name, *args))
    with pytest.raises(ConfigError, match=r"tracking: mlflow is not installed: pip install 'heartbeatai\[tracking\]'"):
        config(tracking="mlflow")


def test_search_space_becomes_optuna_distributions():
    space = optuna_space({**DEFAULT_SPACE, "optim.lr": Distribution(loguniform=(1e-4, 1e-2)),
                          "optim.batch_size": Distribution(lograndint=(8, 64))})
    assert space["mixstyle.p"] == od.FloatDistribution(0.0, 1.0)
    assert space["label_smoothing"] == od.FloatDistribution(0.0, 0.2)
    assert space["loss.kind"] == od.CategoricalDistribution(["bce", "focal", "asl"])
    assert space["optim.lr"] == od.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["optim.batch_size"] == od.IntDistribution(8, 64, log=True)


def test_synthetic_fingerprint_changes_with_the_spec_only():
    a = config(data={"synthetic": {"records": 100}}).data.synthetic
    b = config(data={"synthetic": {"records": 100}}).data.synthetic
    c = config(data={"synthetic": {"records": 101}}).data.synthetic
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_a_synthetic_knob_left_at_zero_keeps_the_fingerprint_of_a_spec_without_it():
    import hashlib
    import json

    spec = config(data={"synthetic": {"records": 100}}).data.synthetic
    # the spec as written before the knobs existed, hashed as fingerprint() has always hashed it
    knobs = ("age_shortcut", "rate_overlap", "acquisition_shortcut")
    before = {k: v for k, v in spec.model_dump(mode="json").items() if k not in knobs}
    assert spec.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    overlapping = config(data={"synthetic": {"records": 100, "rate_overlap": 10}}).data.synthetic
    shortcut = config(data={"synthetic": {"records": 100, "age_shortcut": 1}}).data.synthetic
    marked = config(data={"synthetic": {"records": 100, "acquisition_shortcut": 1}}).data.synthetic
    assert len({spec.fingerprint(), overlapping.fingerprint(), shortcut.fingerprint(), marked.fingerprint()}) == 4


def test_arms_are_overrides_of_the_selected_configuration():
    arms = {a.name: a for a in resolve_arms(["full", "baseline", "prevalence", "wide"],
                                            {"wide": {"model.widths": [16, 32, 64]}})}
    assert dict(arms["full"].overrides) == {}
    assert arms["baseline"].overrides == {"model.se": False, "model.concentration": False, "mixstyle.p": 0.0,
                                          "label_smoothing": 0.0, "loss.kind": "bce"}
    assert not arms["prevalence"].trained
    assert arms["wide"].overrides == {"model.widths": [16, 32, 64]} and arms["wide"].trained


def test_a_file_that_is_not_yaml_is_one_line_with_its_position(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: demo\ndata: {synthetic: [1, 2\n")
    with pytest.raises(ConfigError) as error:
        load_study_config(broken)
    assert "not valid YAML" in str(error.value) and "line" in str(error.value)
    assert "\n" not in str(error.value)


def test_arm_seeds_must_be_disjoint_from_the_search_seed():
    with pytest.raises(ConfigError, match="seeds: the search seed 0 is among the arm seeds"):
        config(search_seed=0, seeds=[0, 1])
    assert config(search_seed=3, seeds=[0, 1]).seeds == [0, 1]


def test_selecting_on_a_threshold_tuned_metric_warns_and_auroc_does_not():
    f1 = config(selection={"metric": "val_macro_f1"}, seeds=[1, 2, 3])
    assert any("tuned on the same validation records" in w for w in f1.warnings())
    assert config(seeds=[1, 2, 3]).warnings() == []
    assert any("conditional on the trained models" in w for w in config(seeds=[1]).warnings())
    assert any("1 degree of freedom" in w for w in config(seeds=[1, 2]).warnings())


def test_the_v1_top_level_bootstrap_reads_as_the_analysis_bootstrap():
    assert config(bootstrap=123).analysis.bootstrap == 123
    assert config(analysis={"rope": 0.02}).analysis.rope == 0.02
    with pytest.raises(ConfigError, match="analysis.decision_probability"):
        config(analysis={"decision_probability": 0.4})


def test_reference_folds_train_full_only_and_run_the_parts_asked_for():
    from heartbeatai.study.plan import _planned_fold_sizes
    from heartbeatai.study.study_folds import select_folds

    study = config(data={"synthetic": {"records": 400, "domains": ["a", "b", "c", "d"]}},
                   protocols=["lodo", "reference"], folds={"reference_per_domain": 2},
                   arms=["full", "no-se", "baseline"])
    assert [a.name for a in study.fold_arms("lodo")] == ["full", "no-se", "baseline"]
    assert [a.name for a in study.fold_arms("reference")] == ["full"]
    assert [a.name for a in study.fold_arms("intra")] == ["full"]
    ids = [f"reference:{d}:{i}" for d in "abcd" for i in range(5)]
    assert select_folds(study, ids, "reference") == [f"reference:{d}:{i}" for d in "abcd" for i in range(2)]
    sizes = {f: (n_train, n_val) for f, n_train, n_val in _planned_fold_sizes(study, "reference")}
    lodo = {f: (n_train, n_val) for f, n_train, n_val in _planned_fold_sizes(study, "lodo")}
    assert len(sizes) == 8 and sizes["reference:c:1"] == lodo["lodo:c"]  # LODO's amount of data
