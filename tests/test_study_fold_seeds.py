"""Every fold searches its own configurations, and a rerun searches the same ones again."""

from __future__ import annotations

import optuna
import pytest

from heartbeatai.study.search_space import DEFAULT_SPACE, optuna_space
from heartbeatai.study.stage_runner import SearchStage, fold_sampler_seed
from heartbeatai.study.study_run import start_study
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset


class _Recorded(Exception):
    pass


class RecordingStageRunner:
    """Records the search stage of each fold instead of training it."""

    concurrent = 1

    def __init__(self):
        self.searches: dict[str, SearchStage] = {}

    def run(self, stage, context, rows):
        self.searches[context.fold_id] = stage
        raise _Recorded


def _first_points(seed: int, n: int = 4) -> list[dict]:
    """What a fold's TPE sampler proposes first (its random start-up trials)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    points = []
    for _ in range(n):
        trial = study.ask(optuna_space(dict(DEFAULT_SPACE)))
        points.append(trial.params)
        study.tell(trial, 0.5)
    return points


def test_each_fold_seeds_its_sampler_from_the_search_seed_and_its_fold_id(tmp_path):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=12)
    seeds = {}
    for run in ("first", "rerun"):
        runner = RecordingStageRunner()
        for fold in ("beta", "gamma"):
            config = tiny_study(data, tmp_path / run / fold, name=f"seeds-{fold}", folds={"domains": [fold]},
                                search_seed=5)
            with pytest.raises(_Recorded):
                start_study(config, progress=lambda _: None, stage_runner=runner)
        seeds[run] = {fold: stage.sampler_seed for fold, stage in runner.searches.items()}
    assert seeds["first"] == seeds["rerun"] == {f"lodo:{d}": fold_sampler_seed(5, f"lodo:{d}") for d in ("beta", "gamma")}
    assert seeds["first"]["lodo:beta"] != seeds["first"]["lodo:gamma"]


def test_fold_sampler_seeds_are_stable_and_folds_explore_different_points():
    # Pinned: a change here changes every study's searches (hashlib, not the salted hash()).
    assert fold_sampler_seed(0, "lodo:georgia") == fold_sampler_seed(0, "lodo:georgia") == 2018552345
    seeds = {fold: fold_sampler_seed(0, fold) for fold in ("lodo:cpsc", "lodo:ptbxl", "lodo:georgia",
                                                            "lodo:chapman", "intra:cpsc:0", "intra:cpsc:1")}
    assert len(set(seeds.values())) == len(seeds) and fold_sampler_seed(1, "lodo:cpsc") != seeds["lodo:cpsc"]
    points = {fold: _first_points(seed) for fold, seed in seeds.items()}
    assert points["lodo:cpsc"] == _first_points(seeds["lodo:cpsc"])  # a rerun proposes the same points
    firsts = [tuple(sorted(p[0].items())) for p in points.values()]
    assert len(set(firsts)) == len(firsts)
