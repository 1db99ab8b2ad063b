"""A finished stage leaves each per-run table in few Parquet parts, reading the same rows as before."""

from __future__ import annotations

import pandas as pd

from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.results.schema import table as table_declaration
from heartbeatai.analysis.study_analysis import ANALYSIS_TABLES
from heartbeatai.study.fold_runner import PER_RUN_TABLES
from heartbeatai.study.study_run import start_study
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    identity = list(table_declaration(table).identity)
    return frame.sort_values(identity, kind="stable").reset_index(drop=True).sort_index(axis=1)


def test_per_run_tables_are_compacted_when_a_stage_ends_without_changing_their_rows(tmp_path, monkeypatch):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    storage = tmp_path / "runs"
    config = tiny_study(data, storage, name="compacted")
    compacted: dict[str, list[tuple[pd.DataFrame, pd.DataFrame]]] = {}
    compact = ResultsWriter.compact

    def spied(self, table):
        before = ResultsStore(str(storage)).read("compacted", table)  # a fresh store: no cache
        merged = compact(self, table)
        compacted.setdefault(table, []).append((before, ResultsStore(str(storage)).read("compacted", table)))
        return merged

    monkeypatch.setattr(ResultsWriter, "compact", spied)
    start_study(config, progress=print, stage_runner=PlantedStageRunner(tmp_path / "fake"))

    # The stages compact the per-run tables; the study-level analysis the tables it rewrote.
    assert set(PER_RUN_TABLES) <= set(compacted) <= set(PER_RUN_TABLES) | set(ANALYSIS_TABLES)
    for table, snapshots in compacted.items():
        for before, after in snapshots:
            assert not before.empty, table
            pd.testing.assert_frame_equal(_sorted(after, table), _sorted(before, table), check_dtype=False)
        parts = list((storage / "compacted" / "results" / table).glob("part-*.parquet"))
        assert len(parts) == 1, f"{table}: {len(parts)} parts after the fold"
    assert len(compacted["trials"]) == 2  # after the search, and after the arms
