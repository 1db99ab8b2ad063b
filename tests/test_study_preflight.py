"""Every config error of a study is one line before anything starts, and leaves no study folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from heartbeatai import cli
from heartbeatai.study.preflight import PreflightError, check_study, check_search_space
from heartbeatai.study.study_config import dump_study_config, parse_study_config
from heartbeatai.config import TrialConfig
from study_fixtures import set_dotted, tiny_study
from train_fixtures import write_planted_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "ablation.py"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=12)


def _raw(planted: Path, storage: Path, **changes) -> dict:
    raw = yaml.safe_load(dump_study_config(tiny_study(planted, storage, name="bad")))
    for dotted, value in changes.items():
        set_dotted(raw, dotted, value, sep="__")
    return raw


# (config changes, the one line expected); keys with "__" are nested: folds__domains = folds.domains
MISCONFIGURATIONS = {
    "misspelt fold domain": ({"folds__domains": ["gamam"]},
                             "folds.domains[0]: unknown domain 'gamam'; did you mean 'gamma'?"),
    "unknown class": ({"classes": ["AF", "RBBB", "LADD"]}, "classes[2]: unknown class 'LADD'; did you mean 'LAD'?"),
    "class not prepared": ({"classes": ["AF", "STD"]}, "classes[1]: STD has no label column in"),
    "misspelt choice": ({"search__space": {"loss.kind": {"choice": ["bce", "focall"]}}},
                        "search.space.loss.kind: choice ['bce', 'focall']: 'focall' is not a valid loss.kind: "
                        "unknown kind 'focall'; did you mean 'focal'? (known: bce, focal, asl)"),
    "bound out of range": ({"search__space": {"mixstyle.p": {"uniform": [0, 2]}}},
                           "search.space.mixstyle.p: uniform [0.0, 2.0]: 2.0 is not a valid mixstyle.p: "
                           "Input should be less than or equal to 1"),
    "float over an integer field": ({"search__space": {"optim.epochs": {"uniform": [1, 4]}}},
                                    "search.space.optim.epochs: uniform [1.0, 4.0]: optim.epochs takes integers"),
    "zero folds": ({"folds__domains": []}, "folds.domains: empty, so the study runs 0 folds"),
    "crossdomain on intra": ({"protocols": ["lodo", "intra"], "trial__mixstyle__mix": "crossdomain"},
                             "trial.mixstyle.mix: crossdomain MixStyle mixes two training domains per batch, but "
                             "the intra folds train on 1 domain"),
    "misspelt arm": ({"arms": ["full", "no-sse"]}, "arms[1]: unknown arm 'no-sse'; did you mean 'no-se'?"),
    "misspelt metric": ({"selection": {"metric": "val_macro_aurc", "oracle": False}},
                        "selection.metric: 'val_macro_aurc' is not recorded per epoch; did you mean 'val_macro_auroc'?"),
    "misspelt search key": ({"search__space": {"mixstyle.pp": {"uniform": [0, 1]}}},
                            "search.space.mixstyle.pp: 'mixstyle.pp' is not a trial configuration key; "
                            "did you mean 'mixstyle.p'?"),
}


@pytest.mark.parametrize("verb", ["run", "plan"])
@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_a_misconfigured_study_is_one_line_and_leaves_no_folder(case, verb, planted, tmp_path, capsys):
    changes, expected = MISCONFIGURATIONS[case]
    storage = tmp_path / "runs"
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_raw(planted, storage, **changes)))
    assert cli.main(["study", verb, str(config), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"heartbeatai study: error: {expected}") or expected in err[0], err[0]
    assert not storage.exists()


def test_the_ablation_script_says_the_same_line_and_leaves_no_folder(planted, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ablation_preflight", SCRIPT)
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    storage = tmp_path / "runs"
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_raw(planted, storage, folds__domains=["gamam"])))
    assert ablation.main(["--config", str(config), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ablation.py: error: folds.domains[0]: unknown domain 'gamam'; did you mean 'gamma'? "
                   f"({planted.resolve()} has alpha, beta, gamma)"]
    assert not storage.exists()


def test_several_problems_are_one_line_each(planted, tmp_path):
    raw = _raw(planted, tmp_path, classes=["AF", "LADD"], folds__domains=["gamam"])
    with pytest.raises(PreflightError) as error:
        check_study(parse_study_config(raw))
    assert len(error.value.problems) == 2 and str(error.value).count("\n") == 1


def test_a_good_config_names_the_folds_it_will_run(planted, tmp_path):
    checked = check_study(tiny_study(planted, tmp_path))
    assert checked.folds == {"lodo": ["lodo:gamma"]}


def test_a_synthetic_spec_domain_is_checked_against_the_generator(tmp_path):
    raw = {"name": "s", "data": {"synthetic": {"records": 40, "domains": ["cpsc", "ptbx"]}}}
    with pytest.raises(PreflightError, match=r"data.synthetic.domains\[1\]: unknown synthetic domain 'ptbx'; "
                                             r"did you mean 'ptbxl'\?"):
        check_study(parse_study_config(raw))
    raw["data"]["synthetic"]["domains"] = ["cpsc", "ptbxl"]
    raw["folds"] = {"domains": ["gerogia"]}
    with pytest.raises(PreflightError, match="folds.domains.0.: unknown domain 'gerogia'"):
        check_study(parse_study_config(raw))


@pytest.mark.parametrize("how", ["overrides", "space"])
def test_crossdomain_mixstyle_of_an_algorithm_arm_is_refused_where_its_folds_train_on_one_domain(how):
    # Two domains: each LODO fold trains on one, where crossdomain MixStyle has no pair to mix.
    p = {"mixstyle.p": {"uniform": [0.1, 1.0]}}  # the mixstyle algorithm refuses p = 0
    arm = ({"overrides": {"mixstyle.p": 0.5, "mixstyle.mix": "crossdomain"}, "space": p} if how == "overrides" else
           {"overrides": {"mixstyle.p": 0.5}, "space": {**p, "mixstyle.mix": {"choice": ["random", "crossdomain"]}}})
    raw = {"name": "s", "data": {"synthetic": {"records": 40, "domains": ["cpsc", "ptbxl"]}},
           "algorithms": ["erm", "mixstyle"], "algorithm_arms": {"mixstyle": arm}}
    with pytest.raises(PreflightError) as error:
        check_study(parse_study_config(raw))
    assert error.value.problems == [f"algorithm_arms.mixstyle.{how}.mixstyle.mix: crossdomain MixStyle mixes two "
                                    "training domains per batch, but the lodo folds train on 1 domain; use mix: random"]
    raw["data"]["synthetic"]["domains"] = ["cpsc", "ptbxl", "georgia"]
    check_study(parse_study_config(raw))


def test_a_class_never_positive_is_a_warning_not_an_error(planted, tmp_path):
    raw = _raw(planted, tmp_path, classes=["AF", "RBBB", "LAD"])
    assert any("LAD is never positive" in w for w in check_study(parse_study_config(raw)).warnings)


def test_a_trial_too_big_for_this_machine_is_refused_only_when_no_cluster_decides(planted, tmp_path):
    raw = _raw(planted, tmp_path, resources={"workers": 1, "cpus_per_worker": 64})
    with pytest.raises(PreflightError, match=r"resources: .*\(this machine, 2 CPUs"):
        check_study(parse_study_config(raw), local_cpus=2.0)
    check_study(parse_study_config(raw))  # on a cluster (or for `plan`) the cluster's size decides


@pytest.mark.parametrize("dotted", ["mixstyle.p", "label_smoothing", "loss.kind", "optim.lr", "model.se"])
def test_every_shipped_search_space_key_accepts_its_own_valid_range(dotted):
    from heartbeatai.study.search_space import Distribution

    valid = {"mixstyle.p": Distribution(uniform=(0.0, 1.0)), "label_smoothing": Distribution(uniform=(0.0, 0.2)),
             "loss.kind": Distribution(choice=["bce", "focal", "asl"]),
             "optim.lr": Distribution(loguniform=(1e-4, 1e-2)), "model.se": Distribution(choice=[True, False])}
    assert check_search_space(TrialConfig(), {dotted: valid[dotted]}) == []


def test_a_run_file_given_to_study_run_is_named_as_one(planted, tmp_path, capsys):
    from train_fixtures import tiny_run_file

    run_file = tiny_run_file(planted).dump(tmp_path / "run.yaml")
    assert cli.main(["study", "run", str(run_file), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"heartbeatai study: error: {run_file} is not a study config: this is a run file; "
                   "use `heartbeatai train --config FILE`"]


def test_a_study_config_given_to_train_is_named_as_one(planted, tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(dump_study_config(tiny_study(planted, tmp_path)))
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"heartbeatai train: error: {config} is not a run file: this is a study config; "
                   "use `heartbeatai study run` (or `study plan`)"]
    assert not (tmp_path / "out").exists()
