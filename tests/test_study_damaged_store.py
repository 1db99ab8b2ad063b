"""A damaged part is named by `study status` and repaired by `study resume`, whichever table it is in.

A finished study (the planted stage runner; a LODO and an intra fold, so that every table has
rows), copied; one part truncated; status must name it and exit non-zero; resume must redo
exactly the stages that lost rows and end with the tables of the undamaged study.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from heartbeatai.cli import main
from heartbeatai.results import ResultsStore, schema
from heartbeatai.study.study_run import resume_study, start_study
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from study_fixtures import assert_same_tables, comparable_tables, tiny_study
from train_fixtures import write_planted_dataset

STUDY = "damaged"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(storage, fake runner root) of a finished study filling every table."""
    root = tmp_path_factory.mktemp("damaged")
    data = write_planted_dataset(root / "data", records_per_domain=24)
    config = tiny_study(data, root / "runs", name=STUDY, protocols=["lodo", "intra"],
                        folds={"domains": ["gamma"], "intra_per_domain": 1}, arms=["full", "no-se", "prevalence"],
                        search={"trials_per_fold": 3}, scheduler={"kind": "none"}, seeds=[1],
                        selection={"oracle": True}, record_views=1,
                        # An algorithm arm: its own search's rows and algorithm_parts are damaged and redone too.
                        algorithms=[next(k for k in ALGORITHMS if k != DEFAULT_ALGORITHM)])
    start_study(config, progress=print, stage_runner=PlantedStageRunner(root / "fake"))
    store = ResultsStore(str(root / "runs"))
    for table in schema.TABLES:
        assert not store.read(STUDY, table).empty, f"{table}: the fixture study left it empty"
    return root / "runs", root / "fake"


def _truncated_copy(finished, tmp_path: Path, table: str) -> tuple[Path, str]:
    storage, _ = finished
    copy = tmp_path / "runs"
    shutil.copytree(storage / STUDY, copy / STUDY)
    part = sorted((copy / STUDY / "results" / table).glob("part-*.parquet"))[-1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    return copy / STUDY, part.name


def _journal(study_dir: Path) -> dict:
    return json.loads((study_dir / "journal.json").read_text())


def _damage_and_repair(finished, tmp_path, capsys, table: str) -> tuple[str, str]:
    storage, fake = finished
    study_dir, part = _truncated_copy(finished, tmp_path, table)
    capsys.readouterr()
    assert main(["study", "status", str(study_dir)]) == 1
    status = capsys.readouterr().out
    assert f"damaged results/{table}/{part}" in status and f"heartbeatai study resume {study_dir}" in status  # absolute: tmp is outside the working folder

    resumed = PlantedStageRunner(fake)
    resume_study(study_dir, progress=print, stage_runner=resumed)
    said = capsys.readouterr().out
    assert resumed.trials_started == [], "a finished trial was trained again"
    assert (study_dir / "damaged" / table / part).is_file() and not (study_dir / "results" / table / part).exists()
    assert_same_tables(comparable_tables(ResultsStore(str(study_dir.parent)), STUDY),
                       comparable_tables(ResultsStore(str(storage)), STUDY))
    assert main(["study", "status", str(study_dir)]) == 0
    return status, said


def test_a_truncated_trials_part_is_named_and_its_stages_redone_without_training(finished, tmp_path, capsys):
    status, said = _damage_and_repair(finished, tmp_path, capsys, "trials")
    assert "no trials yet" not in status
    rerun = said.split("rerunning ", 1)[1].splitlines()[0]
    assert {"lodo:gamma search", "lodo:gamma arms", "intra:gamma:0 search", "study analysis"} <= set(rerun.split(", "))
    assert "selection" not in rerun and "record_views" not in rerun  # their rows were not in that part


@pytest.mark.slow
@pytest.mark.parametrize("table", [t for t in schema.TABLES if t != "trials"])
def test_a_truncated_part_of_any_table_is_named_and_repaired(finished, tmp_path, capsys, table):
    _damage_and_repair(finished, tmp_path, capsys, table)
