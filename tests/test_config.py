"""Trial configuration and run files: validation names the key, overrides, YAML round trip."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from heartbeatai.config import (
    ConfigError,
    TrialConfig,
    describe_validation_error,
    flatten_config,
)
from heartbeatai.metric_names import DEFAULT_SELECTION_METRIC
from heartbeatai.protocols import PROTOCOLS, REGISTRY as PROTOCOL_REGISTRY, fold_id
from heartbeatai.run_file import RunFile


def _error_text(raw: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        TrialConfig.model_validate(raw)
    return describe_validation_error(caught.value)


def test_out_of_range_value_is_an_error_naming_its_dotted_key():
    assert _error_text({"mixstyle": {"p": 1.5}}).startswith("mixstyle.p:")
    assert _error_text({"label_smoothing": 0.5}).startswith("label_smoothing:")
    assert _error_text({"optim": {"lr": 0}}).startswith("optim.lr:")


def test_unknown_key_is_an_error_naming_it():
    assert _error_text({"model": {"widht": [8]}}).startswith("model.widht:")


def test_inconsistent_sections_are_errors_naming_the_section():
    two_stages = {"widths": [8, 16], "depths": [1, 1], "concentration_stages": [1]}
    assert _error_text({"model": {**two_stages, "depths": [1]}}).startswith("model.depths:")
    assert _error_text({"model": {**two_stages, "concentration_stages": [3]}}).startswith(
        "model.concentration_stages:"
    )
    assert _error_text(
        {"preprocess": {"bandpass_low_hz": 40, "bandpass_high_hz": 20}}
    ).startswith("preprocess.bandpass_low_hz:")
    # MixStyle after the last stage would mix label-bearing statistics.
    text = _error_text({"model": two_stages, "mixstyle": {"layers": [2]}})
    assert text.startswith("mixstyle.layers:")


def test_overrides_replace_dotted_fields_and_revalidate():
    cfg = TrialConfig().with_overrides({"mixstyle.p": 0.0, "loss.kind": "bce", "seed": 3})
    assert (cfg.mixstyle.p, cfg.loss.kind, cfg.seed) == (0.0, "bce", 3)
    assert TrialConfig().mixstyle.p == 0.5  # the original is untouched
    with pytest.raises(ConfigError, match=r"^loss\.kind:"):
        TrialConfig().with_overrides({"loss.kind": "hinge"})
    with pytest.raises(ConfigError, match=r"^mixstyle\.q: unknown key"):
        TrialConfig().with_overrides({"mixstyle.q": 1})
    with pytest.raises(ConfigError, match=r"^seed: not a section"):
        TrialConfig().with_overrides({"seed.x": 1})


def test_flatten_gives_every_leaf_once_and_round_trips_through_overrides():
    cfg = TrialConfig().with_overrides({"model.widths": [8, 16], "model.depths": [1, 1],
                                        "model.concentration_stages": [1], "mixstyle.layers": [1]})
    flat = flatten_config(cfg)
    assert flat["model.widths"] == [8, 16]
    assert flat["preprocess.bandpass_high_hz"] == 45.0
    assert TrialConfig().with_overrides(flat) == cfg


def _run_file(**fields) -> RunFile:
    base = {"data": {"path": "/data/prepared", "fingerprint": "abc"}, "fold_id": "lodo:georgia",
            "classes": ["AF", "RBBB"]}
    return RunFile.model_validate({**base, **fields})


def test_run_file_round_trips_through_plain_yaml(tmp_path):
    run = _run_file(trial=TrialConfig().with_overrides({"optim.epochs": 2}).model_dump())
    path = run.dump(tmp_path / "run.yaml")
    assert "!!python" not in path.read_text()
    assert RunFile.load(path) == run
    assert run.protocol == "lodo" and run.selection_metric == DEFAULT_SELECTION_METRIC


def test_run_file_errors_name_the_key_and_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x"}, "fold_id": "lodo:cpsc",
                                    "classes": ["AF"], "trial": {"mixstyle": {"alpha": -1}}}))
    with pytest.raises(ConfigError, match=r"run\.yaml: trial\.mixstyle\.alpha:"):
        RunFile.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        RunFile.load(tmp_path / "missing.yaml")


def test_run_file_needs_exactly_one_data_source():
    with pytest.raises(ValidationError, match="exactly one"):
        _run_file(data={"path": "x", "synthetic": {"records": 10}})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_run_file_takes_every_protocols_fold_ids_and_refuses_them_off_the_grammar(protocol):
    cross_fitted = PROTOCOL_REGISTRY[protocol].cross_fitted
    fold = fold_id(protocol, "georgia", 2 if cross_fitted else None)
    assert _run_file(fold_id=fold).protocol == protocol
    off_grammar = fold_id(protocol, "georgia", None if cross_fitted else 2)
    for bad in (off_grammar, "georgia", f"{protocol}:"):
        with pytest.raises(ValidationError, match="fold_id"):
            _run_file(fold_id=bad)


def test_command_line_fields_override_the_run_file():
    run = _run_file().with_fields(fold_id="lodo:cpsc", selection_metric=None)
    assert run.fold_id == "lodo:cpsc" and run.selection_metric == DEFAULT_SELECTION_METRIC
    with pytest.raises(ConfigError, match="fold_id"):
        _run_file().with_fields(fold_id="nope")


@pytest.mark.parametrize("widths", [[16, 32, 64], [16]], ids=["three-stages", "one-stage"])
def test_a_run_file_that_only_sets_widths_is_valid_for_any_number_of_stages(tmp_path, widths):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x"}, "fold_id": "lodo:cpsc", "classes": ["AF"],
                                    "trial": {"model": {"widths": widths}}}))
    resolved = RunFile.load(path).trial.resolved()
    inner = tuple(range(1, len(widths)))  # every stage but the last
    assert resolved.model.depths == (2,) * len(widths)
    assert resolved.model.concentration_stages == inner and resolved.mixstyle.layers == inner


def test_an_explicit_stage_list_past_the_model_is_still_an_error_naming_the_key():
    three = {"widths": [16, 32, 64]}
    assert _error_text({"model": three, "mixstyle": {"layers": [3]}}).startswith("mixstyle.layers:")
    assert _error_text({"model": {**three, "concentration_stages": [3]}}).startswith("model.concentration_stages:")
    assert _error_text({"model": {**three, "depths": [1, 1]}}).startswith("model.depths:")
    assert _error_text({"model": {"widths": [16]}, "mixstyle": {"layers": [1]}}).startswith("mixstyle.layers:")


def test_default_stage_lists_resolve_to_what_the_reference_spelt_out():
    spelt_out = TrialConfig().with_overrides({"model.depths": [2, 2, 2, 2], "model.concentration_stages": [1, 2, 3],
                                              "mixstyle.layers": [1, 2, 3]})
    assert TrialConfig().resolved() == spelt_out.resolved() == spelt_out
    assert TrialConfig() != spelt_out  # the default stays "every stage but the last", not (1, 2, 3)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"model.widths": [16, 32, 64]}, {"model.widths": [16]}, {"mixstyle.layers": [2], "model.depths": [1, 1, 1, 1]}],
    ids=["defaults", "three-stages", "one-stage", "explicit"],
)
def test_stage_lists_round_trip_through_the_trials_table_columns(overrides):
    from heartbeatai.study.selection import config_of_row

    cfg = TrialConfig().with_overrides(overrides)
    # As the trials table stores them (tune_runner): lists as JSON text, None as null.
    row = pd.Series({f"cfg.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in flatten_config(cfg).items()})
    assert config_of_row(row, TrialConfig()) == cfg
    assert TrialConfig().with_overrides(flatten_config(cfg)) == cfg


def test_a_row_written_with_explicit_stages_reads_back_under_the_none_defaults():
    from heartbeatai.study.selection import config_of_row

    # A trials row from before the stage lists defaulted to None holds them as JSON text.
    row = pd.Series({"cfg.model.depths": "[2, 2, 2, 2]", "cfg.mixstyle.layers": "[1, 2, 3]",
                     "cfg.model.concentration_stages": "[1, 2, 3]"})
    read = config_of_row(row, TrialConfig())
    assert read.mixstyle.layers == (1, 2, 3) and read.resolved() == TrialConfig().resolved()


def test_the_commit_comes_from_the_stamp_where_the_tree_has_no_git(tmp_path, monkeypatch):
    import subprocess

    from heartbeatai import run_file

    def no_git(*args, **kwargs):
        raise subprocess.CalledProcessError(128, "git")  # as in a file mount without .git

    stamp = tmp_path / "_build_commit.txt"
    monkeypatch.setattr(run_file.subprocess, "run", no_git)
    monkeypatch.setattr(run_file, "BUILD_COMMIT_FILE", stamp)
    assert run_file.git_commit() is None
    stamp.write_text("0123456789abcdef0123456789abcdef01234567\n")
    assert run_file.git_commit() == "0123456789abcdef0123456789abcdef01234567"
    assert run_file.Provenance.collect(dataset_fingerprint=None, folds_file=None, classes=["AF"]).git_commit == \
        "0123456789abcdef0123456789abcdef01234567"
    stamp.write_text("not a commit; rm -rf /\n")
    assert run_file.git_commit() is None


def test_the_make_target_stamps_the_commit_the_provenance_reads(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    if shutil.which("make") is None or not (repo / ".git").exists():
        pytest.skip("needs make and a git checkout")
    target = tmp_path / "commit.txt"
    subprocess.run(["make", "-s", "commit-stamp", f"COMMIT_STAMP={target}"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert target.read_text().strip() == head


@pytest.mark.parametrize("where, text, expected", [
    ("study", "name: x\ndata: {synthetic: {records: 10, sed: 3}}\nprotocols: [lodo]\n",
     "data.synthetic.sed: unknown key; did you mean 'seed'?"),
    ("study", "name: x\ndata: {synthetic: {records: 10}}\nprotocols: [lodo]\ntrial: {optim: {epochz: 2}}\n",
     "trial.optim.epochz: unknown key; did you mean 'epochs'?"),
    ("study", "name: x\ndata: {synthetic: {records: 10}}\nprotocols: [lodo]\ntrial: {loss: {kind: focal, gamm: 2}}\n",
     "trial.loss.gamm: unknown key; did you mean 'gamma'?"),
    ("study", "name: x\ndata: {synthetic: {records: 10}}\nprotocols: [lodo]\n"
              "search: {space: {lr: {unifrom: [0.1, 0.2]}}}\n",
     "search.space.lr.unifrom: unknown key; did you mean 'uniform'?"),
    ("study", "name: x\ndata: {synthetic: {records: 10}}\nprotocols: [lodo]\nanalysys: {bootstrap: 3}\n",
     "analysys: unknown key; did you mean 'analysis'?"),
    ("run", "schema_version: 1\ndata: {path: p}\nfold_id: lodo:georgia\ntrial: {algorithm: {kind: vrex, penlty_weight: 1}}\n",
     "trial.algorithm.penlty_weight: unknown key; did you mean 'penalty_weight'?"),
    ("run", "schema_version: 1\ndata: {path: p}\nfold_id: lodo:georgia\nselection_metrc: val_loss\n",
     "selection_metrc: unknown key; did you mean 'selection_metric'?"),
])
def test_an_unknown_key_at_any_depth_names_the_closest_known_key(tmp_path, where, text, expected):
    from heartbeatai.run_file import RunFile
    from heartbeatai.study.study_config import load_study_config

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_study_config(path) if where == "study" else RunFile.load(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_override_key_names_the_closest_known_key():
    with pytest.raises(ConfigError, match=r"optim\.epochz: unknown key; did you mean 'epochs'\?"):
        TrialConfig().with_overrides({"optim.epochz": 3})
