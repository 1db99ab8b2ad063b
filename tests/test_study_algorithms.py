"""Algorithm arms: each its own search at `full`'s budget, draws stable under adding others (DESIGN.md, Study).

A study's `algorithms` turns every registered algorithm but ERM (`full`) into the arm
`algorithm-<kind>`. The whole study runs in-process against the planted stage runner (no
training), so what is pinned is the policy: which searches run, with which space, budget
and seed, what each arm retrains from, and how the store keys it. Those two studies take
about 10 s on 2 cores: the tests that read them are marked slow; the seed and config
checks below them are fast.
"""

from __future__ import annotations

import pandas as pd
import pytest

from heartbeatai.arms import ALGORITHM_ARM_PREFIX, FULL, SEARCH, algorithm_of
from heartbeatai.config import ConfigError
from heartbeatai.results import ResultsStore
from heartbeatai.run_file import RunFile
from heartbeatai.study.search_space import declared_space
from heartbeatai.study.stage_runner import algorithm_sampler_seed, fold_sampler_seed
from heartbeatai.study.study_run import start_study
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from study_fixtures import tiny_study
from train_fixtures import FOLD, write_planted_dataset

# Every registered algorithm with parameters to search: an algorithm registered tomorrow is
# searched by these tests the day it is registered.
COMPARED = [kind for kind in ALGORITHMS if kind != DEFAULT_ALGORITHM]
TRIALS = 3


# The first compared algorithm's arm also moves its base (algorithm_arms), as MixStyle's must.
OWN_BASE = {"model.dropout": 0.25}


def _run(tmp, data, name: str, algorithms: list[str]) -> dict[str, pd.DataFrame]:
    own = {COMPARED[0]: {"overrides": OWN_BASE}} if COMPARED[0] in algorithms else {}
    # As the zoo's config: loss.kind not searched (Mixup refuses focal and ASL).
    space = {"mixstyle.p": {"uniform": [0.1, 1.0]}, "label_smoothing": {"uniform": [0.0, 0.2]}}
    config = tiny_study(data, tmp / name, name=name, algorithms=algorithms, seeds=[1, 2],
                        search={"trials_per_fold": TRIALS, "space": space}, algorithm_arms=own)
    start_study(config, progress=lambda _: None, stage_runner=PlantedStageRunner(tmp / f"{name}-fake"))
    store = ResultsStore(str(tmp / name))
    return {t: store.read(name, t) for t in ("trials", "fold_metrics", "ablation_tests", "algorithm_parts",
                                             "predictions", "class_metrics", "best_configs", "importances")}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("algorithms")
    data = write_planted_dataset(tmp / "data", records_per_domain=24)
    # "without" lacks the first compared algorithm (with V-REx alone registered: every one).
    return {"zoo": _run(tmp, data, "zoo", [DEFAULT_ALGORITHM, *COMPARED]),
            "without": _run(tmp, data, "without", COMPARED[1:])}


def _search_configs(trials: pd.DataFrame, arm: str) -> list[dict]:
    rows = trials[(trials["arm"] == arm) & (trials["selection"] == "search")].drop_duplicates("trial_id", keep="last")
    cfg = [c for c in rows.columns if c.startswith("cfg.")]
    return [{k: v for k, v in row.items() if pd.notna(v)} for row in rows.sort_values("trial_id")[cfg].to_dict("records")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", COMPARED)
def test_each_algorithm_searches_its_own_parameters_with_fulls_budget(studies, kind):
    trials = studies["zoo"]["trials"].drop_duplicates("trial_id", keep="last")
    arm = f"{ALGORITHM_ARM_PREFIX}{kind}"
    own = trials[(trials["arm"] == arm) & (trials["selection"] == "search")]
    full = trials[(trials["arm"] == SEARCH) & (trials["selection"] == "search")]
    assert len(own) == len(full) == TRIALS
    assert set(own["cfg.algorithm.kind"]) == {kind} and set(full["cfg.algorithm.kind"]) == {DEFAULT_ALGORITHM}
    assert set(own["seed"]) == {0} and set(own["fold_id"]) == {FOLD}  # the search seed, never an arm seed
    declared = declared_space("algorithm", kind)
    for key, dist in declared.items():  # drawn from its declared distribution
        low, high = dist.uniform or dist.loguniform or dist.randint or dist.lograndint or (None, None)
        values = own[f"cfg.{key}"]
        assert values.notna().all() and (low is None or values.between(low, high).all()), key
    if declared:  # not left at its defaults: three draws of a few small integer ranges may repeat, not all
        assert any(own[f"cfg.{key}"].nunique() > 1 for key in declared)
    if kind == COMPARED[0]:  # its algorithm_arms overrides are its base, and not full's
        runs = trials[trials["arm"] == arm]
        assert set(runs["cfg.model.dropout"]) == {OWN_BASE["model.dropout"]} != set(full["cfg.model.dropout"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", COMPARED)
def test_each_algorithm_arm_retrains_its_own_selection_at_every_arm_seed(studies, kind):
    trials = studies["zoo"]["trials"].drop_duplicates("trial_id", keep="last")
    arm = f"{ALGORITHM_ARM_PREFIX}{kind}"
    runs = trials[(trials["arm"] == arm) & (trials["selection"] == "val")]
    assert sorted(runs["seed"]) == [1, 2]
    searched = _search_configs(trials, arm)
    declared = [f"cfg.{k}" for k in declared_space("algorithm", kind)]
    picked = {tuple(row[c] for c in declared) for row in runs.to_dict("records")}
    assert len(picked) == 1 and picked <= {tuple(c[k] for k in declared) for c in searched}
    tested = studies["zoo"]["fold_metrics"]
    assert sorted(tested.loc[(tested["arm"] == arm) & (tested["split"] == "test"), "seed"].unique()) == [1, 2]


@pytest.mark.slow
def test_each_algorithm_arms_selection_is_a_best_config_that_export_writes(studies):
    best = studies["zoo"]["best_configs"]
    trials = studies["zoo"]["trials"]
    for kind in COMPARED:
        arm = f"{ALGORITHM_ARM_PREFIX}{kind}"
        mine = best[(best["arm"] == arm) & (best["fold_id"] == FOLD)]
        assert list(mine["selection"]) == ["val"]
        run = RunFile.from_text(mine["run_file"].iloc[0])
        assert run.trial.algorithm.kind == kind and run.provenance.trial_id in set(
            trials.loc[(trials["arm"] == arm) & (trials["selection"] == "search"), "trial_id"])
    assert set(best.loc[best["fold_id"] == "consensus", "arm"]) == {SEARCH} | {
        f"{ALGORITHM_ARM_PREFIX}{kind}" for kind in COMPARED}


@pytest.mark.slow
def test_each_algorithm_arms_search_has_importances_of_its_own(studies):
    importances = studies["zoo"]["importances"]
    assert set(importances.loc[importances["arm"] == SEARCH, "param"]) <= set(
        studies["zoo"]["trials"].filter(like="cfg.").columns.str.removeprefix("cfg."))
    for kind in COMPARED:
        mine = importances[importances["arm"] == f"{ALGORITHM_ARM_PREFIX}{kind}"]
        searched = set(declared_space("algorithm", kind))
        assert len(mine) and (mine["fold_id"] == FOLD).all()
        # Its own space: the algorithm's declared parameters among what it ranks.
        assert not searched or searched & set(mine["param"]), (kind, sorted(mine["param"]))


@pytest.mark.slow
def test_adding_an_algorithm_leaves_every_other_search_draw_identical(studies):
    zoo, without = studies["zoo"]["trials"], studies["without"]["trials"]
    for kind in COMPARED[1:]:
        arm = f"{ALGORITHM_ARM_PREFIX}{kind}"
        assert _search_configs(zoo, arm) == _search_configs(without, arm)
    # `full`'s search (ERM's) is the one a study without algorithms makes.
    assert _search_configs(zoo, SEARCH) == _search_configs(without, SEARCH)
    assert not (set(without["arm"]) & {f"{ALGORITHM_ARM_PREFIX}{COMPARED[0]}"})


@pytest.mark.slow
def test_each_algorithms_degradation_parts_against_erm_sum_to_its_f1_difference(studies):
    parts = studies["zoo"]["algorithm_parts"]
    assert set(parts["arm"]) == {f"{ALGORITHM_ARM_PREFIX}{k}" for k in COMPARED} and set(parts["domain"]) == {"gamma"}
    summed = parts["prevalence"] + parts["threshold"] + parts["ranking"]
    assert (summed - parts["total"]).abs().max() < 1e-9
    assert (parts["f1_algorithm"] - parts["f1_erm"] - parts["total"]).abs().max() < 1e-9


@pytest.mark.slow
def test_an_algorithm_that_predicts_as_erm_does_has_zero_parts(studies):
    from heartbeatai.analysis.degradation import algorithm_part_rows

    zoo = studies["zoo"]
    def with_copy(frame: pd.DataFrame) -> pd.DataFrame:  # full's runs again, as an algorithm arm's
        own = frame[frame["arm"] == FULL]
        return pd.concat([frame, own.assign(arm="algorithm-copy", trial_id=own["trial_id"] + "-copy")],
                         ignore_index=True)

    copy = {t: with_copy(zoo[t]) for t in ("predictions", "class_metrics", "trials")}
    parts = algorithm_part_rows(copy["predictions"], copy["class_metrics"], copy["trials"], "zoo",
                                n_boot=20, seed=0, min_positives=5)
    own = parts[parts["arm"] == "algorithm-copy"]
    assert len(own) and (own[["total", "prevalence", "threshold", "ranking"]].abs().to_numpy().max() == 0)


@pytest.mark.slow
def test_algorithm_arms_are_compared_with_full_in_their_own_family(studies):
    tests = studies["zoo"]["ablation_tests"]
    algorithm_rows = tests[tests["arm"].map(algorithm_of).notna()]
    assert set(algorithm_rows["arm"]) == {f"{ALGORITHM_ARM_PREFIX}{k}" for k in COMPARED}
    across = algorithm_rows[(algorithm_rows["scope"] == "across") & (algorithm_rows["metric"] == "macro_auroc")]
    assert set(across["family"]) <= {"algorithms: confirmatory"}
    assert not set(tests.loc[tests["arm"] == FULL, "family"])  # `full` is the reference, never a row


def test_sampler_seeds_are_stable_hashes_of_study_seed_fold_and_algorithm():
    # Pinned: a change here changes every zoo's searches (hashlib, not the salted hash()).
    assert algorithm_sampler_seed(0, "lodo:georgia", "vrex") == algorithm_sampler_seed(0, "lodo:georgia", "vrex")
    assert algorithm_sampler_seed(0, "lodo:georgia", "vrex") == 198415056
    seeds = {algorithm_sampler_seed(s, f, a) for s in (0, 1) for f in ("lodo:cpsc", "lodo:georgia")
             for a in ("vrex", "coral")}
    assert len(seeds) == 8 and fold_sampler_seed(0, "lodo:georgia") not in seeds


@pytest.mark.parametrize(("fields", "message"), [
    ({"algorithms": ["vrx"]}, "unknown algorithm 'vrx'; did you mean 'vrex'?"),
    ({"algorithms": ["vrex"], "trial": {"algorithm": {"kind": "vrex"}}}, "must train erm"),
    ({"algorithms": ["vrex"], "arms": ["full", "algorithm-vrex"]}, "come from `algorithms: [vrex]`"),
    ({"algorithms": ["vrex", "vrex"]}, "unique"),
])
def test_the_config_refuses_algorithms_it_cannot_compare(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        tiny_study(tmp_path, tmp_path / "runs", **fields)


def test_the_zoo_config_lists_every_registered_algorithm_by_name():
    from pathlib import Path

    from heartbeatai.study.study_config import load_study_config

    config = load_study_config(Path(__file__).resolve().parents[1] / "studies" / "configs" / "dg_zoo.yaml")
    assert sorted(config.algorithms) == sorted(ALGORITHMS), "add the new algorithm to studies/configs/dg_zoo.yaml"
    assert config.trial.algorithm.kind == DEFAULT_ALGORITHM and config.protocols == ["lodo"]
    assert [a.algorithm for a in config.fold_arms("lodo") if a.algorithm] == COMPARED


def test_an_algorithm_arm_may_set_its_own_base_and_extra_dimensions(tmp_path):
    # MixStyle, an algorithm whose parameters live in the `mixstyle` section and which refuses
    # `mixstyle.p: 0`, needs exactly this in a zoo whose ERM reference has MixStyle off.
    kind = COMPARED[0]
    config = tiny_study(tmp_path, tmp_path / "runs", algorithms=[kind], algorithm_arms={kind: {
        "overrides": {"model.dropout": 0.25}, "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-2]}}}})
    assert config.algorithm_base(kind).model.dropout == 0.25 and config.trial.model.dropout != 0.25
    assert config.algorithm_base(kind).algorithm.kind == kind
    assert set(config.algorithm_space(kind)) == {*config.search.space, *declared_space("algorithm", kind), "optim.lr"}
    for arms, message in (({"erm": {}}, "not among the compared algorithms"),
                          ({kind: {"overrides": {"model.dropuot": 0.1}}}, "did you mean 'model.dropout'"),
                          ({kind: {"overrides": {"model.dropout": 7.0}}}, f"algorithm_arms.{kind}: ")):
        with pytest.raises(ConfigError, match=message):
            tiny_study(tmp_path, tmp_path / "runs", algorithms=[kind], algorithm_arms=arms)


def test_preflight_builds_each_algorithm_arms_space_into_its_own_base(tmp_path):
    from heartbeatai.study.preflight import PreflightError, check_study
    from train_fixtures import write_planted_dataset

    data = write_planted_dataset(tmp_path / "data", records_per_domain=12)
    kind = COMPARED[0]
    bad = {kind: {"space": {"model.dropout": {"uniform": [0.0, 1.5]}}}}  # full's own space is fine
    config = tiny_study(data, tmp_path / "runs", algorithms=[kind], algorithm_arms=bad)
    with pytest.raises(PreflightError, match=f"algorithm-{kind}: search.space.model.dropout"):
        check_study(config)
    check_study(tiny_study(data, tmp_path / "runs", algorithms=[kind]))
