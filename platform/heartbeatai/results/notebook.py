"""A study's tables as DataFrames in a notebook: `open_study("runs/demo").fold_metrics(arm="full")`.

Read-only, over the results store alone (no torch, no Ray): each accessor is one table of
results/schema.py, filtered by any of its columns given as keyword arguments (a value, or
a list of accepted values). The study is named by its folder, as everywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from heartbeatai.results import schema
from heartbeatai.results.reader import ResultsStore


class StudyResults:
    """One study's results store, read-only."""

    def __init__(self, study_dir: str | os.PathLike):
        self.path = Path(study_dir).expanduser().resolve()
        if not (self.path / "results").is_dir():
            raise FileNotFoundError(f"{study_dir} is not a study directory (no results/)")
        self.name = self.path.name
        self.store = ResultsStore(str(self.path.parent))

    def table(self, name: str, **filters: Any) -> pd.DataFrame:
        """Any table of the schema, filtered by its columns (`table("epochs", fold_id="lodo:cpsc")`)."""
        return self.store.read(self.name, name, filters=filters or None).reset_index(drop=True)

    def trials(self, **filters: Any) -> pd.DataFrame:
        return self.table("trials", **filters)

    def fold_metrics(self, **filters: Any) -> pd.DataFrame:
        return self.table("fold_metrics", **filters)

    def class_metrics(self, **filters: Any) -> pd.DataFrame:
        return self.table("class_metrics", **filters)

    def predictions(self, **filters: Any) -> pd.DataFrame:
        return self.table("predictions", **filters)

    def degradation(self, **filters: Any) -> pd.DataFrame:
        return self.table("degradation", **filters)

    def ablation_tests(self, **filters: Any) -> pd.DataFrame:
        return self.table("ablation_tests", **filters)

    def best_config(self, fold_id: str, selection: str = "val", arm: str = "search"):
        """The run file the study selected for `fold_id` ("consensus" for the consensus), as a
        RunFile whose data.path is resolved against the study folder; `arm`: whose search
        selected it (full's, or an algorithm arm such as "algorithm-vrex")."""
        from heartbeatai.analysis.consensus import of_arm
        from heartbeatai.run_file import RunFile

        rows = of_arm(self.table("best_configs", fold_id=fold_id, selection=selection), arm)
        if rows.empty:
            known = ", ".join(sorted(set(self.table("best_configs")["fold_id"])))
            raise KeyError(f"no {selection} selection for {fold_id!r} in {self.name}; folds: {known or 'none'}")
        return RunFile.from_text(rows["run_file"].iloc[0], self.path)

    def __repr__(self) -> str:
        return f"StudyResults({str(self.path)!r}; tables: {', '.join(schema.TABLES)})"


def open_study(study_dir: str | os.PathLike) -> StudyResults:
    """The study at `study_dir` (<storage>/<study>), read-only."""
    return StudyResults(study_dir)
