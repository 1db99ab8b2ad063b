"""The best_configs table: each fold's selected run file and the consensus across folds (DESIGN.md, Study).

Each fold's search picks its own configuration; the consensus is the one configuration
to train on all sources afterwards: per field of the trial configuration, the median
of the folds' values when the field is numeric, the most frequent value otherwise
(loss kind, booleans, stage lists, fields that are off (None) in some folds). Ties go
to the value of the fold listed first, so the result does not depend on dict order.

A stored run file's provenance names its study, selection, trial and selected value, and
its data.path is relative to the study directory (`<storage>/<study>`), so a store moved
to another machine or mount names no path of the first one; export rewrites it relative
to the exported file. The consensus was never trained: its row's metric says so and its
value is empty.
"""

from __future__ import annotations

from collections import Counter
from numbers import Real
from typing import Any, Sequence

from pathlib import Path

import numpy as np
import pandas as pd

from heartbeatai.arms import SEARCH
from heartbeatai.config import TrialConfig, flatten_config
from heartbeatai.run_file import RunFile
from heartbeatai.results import ResultsStore
from heartbeatai.results.schema import CONSENSUS_FOLD, searched_by

# The selection whose run files are exported and agreed on (the oracle is an upper bound only).
EXPORTED_SELECTION = "val"


def consensus_value(values: Sequence[Any]) -> Any:
    """Median of numbers (an int when every value is an int), else the most frequent value."""
    numeric = all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
    if numeric:
        median = float(np.median(values))
        return int(round(median)) if all(isinstance(v, int) for v in values) else median
    # Lists (stage widths, tapped stages) are compared whole.
    hashable = [tuple(v) if isinstance(v, list) else v for v in values]
    winner = Counter(hashable).most_common(1)[0][0]  # most_common keeps first-seen order on ties
    return list(winner) if isinstance(winner, tuple) else winner


def consensus_config(configs: Sequence[TrialConfig]) -> TrialConfig:
    """The validated consensus of the folds' selected trial configurations."""
    if not configs:
        raise ValueError("no selected configurations to build a consensus from")
    flats = [flatten_config(c) for c in configs]
    # Folds that selected different loss kinds have different parameter keys: each key's
    # consensus is over the folds that have it, and only the winning kind's then act.
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    consensus = {key: consensus_value([flat[key] for flat in flats if key in flat]) for key in keys}
    return configs[0].with_overrides(consensus, inactive="drop")


# The consensus row's metric: it was never trained, so it has no value of its own.
NOT_TRAINED = "not trained (consensus of the folds' selections)"


def run_file_text(run_file: RunFile, study_dir: str | Path | None = None) -> str:
    """The YAML text of a run file for the best_configs table, data.path relative to the study directory."""
    return run_file.text(relative_to=study_dir)


def parse_run_file(text: str, study_dir: str | Path | None = None) -> RunFile:
    """A stored run file's YAML text, validated; data.path resolved against the study directory if given."""
    return RunFile.from_text(text, study_dir)


def best_config_rows(
    study: str,
    protocol: str,
    fold_id: str,
    selection: str,
    run_file: RunFile | str,
    metric: str | None,
    value: float | None,
    *,
    trial_id: str | None = None,
    study_dir: str | Path | None = None,
    arm: str = SEARCH,
) -> pd.DataFrame:
    """One best_configs row: a fold's selected run file (or the consensus) and its metric;
    `arm` is whose search selected it (`search`: full's; or an algorithm arm).

    A fold's run file gets the study, selection, trial and selected value into its provenance,
    and its data.path relative to `study_dir` (the study's folder) when given.
    """
    if not isinstance(run_file, str):
        if fold_id != CONSENSUS_FOLD:
            origin = {"study": study, "selection": selection, "trial_id": trial_id,
                      "selected_value": None if value is None else float(value)}
            run_file = run_file.model_copy(update={"provenance": run_file.provenance.model_copy(update=origin)})
        run_file = run_file_text(run_file, study_dir)
    return pd.DataFrame([{
        "study": study, "protocol": protocol, "fold_id": fold_id, "selection": selection,
        "metric": metric, "value": None if value is None else float(value), "run_file": run_file, "arm": arm,
    }])


def of_arm(rows: pd.DataFrame, arm: str = SEARCH) -> pd.DataFrame:
    """The best_configs rows of `arm`'s search (an empty arm is full's, as older stores wrote it;
    where a fold has both, from a stage rerun since, the later row)."""
    own = searched_by(rows)
    mine = rows[own == arm].assign(arm=arm)
    return mine.drop_duplicates(["protocol", "fold_id", "selection", "arm"], keep="last")


def selected_arms(rows: pd.DataFrame) -> list[str]:
    """Every arm with a selection among `rows`: full's search first, then the algorithm arms by name."""
    arms = set(searched_by(rows))
    return sorted(arms, key=lambda arm: (arm != SEARCH, arm))


def consensus_run_file(run_files: list[RunFile], study: str | None = None) -> RunFile:
    """The first run file with its trial configuration replaced by the folds' consensus, and a
    provenance naming the folds it merges (no trial, no selected value: it was never trained)."""
    trial = consensus_config([r.trial for r in run_files])
    provenance = run_files[0].provenance.model_copy(update={
        "study": study or run_files[0].provenance.study, "selection": CONSENSUS_FOLD, "trial_id": None,
        "selected_value": None, "consensus_of": tuple(r.fold_id for r in run_files)})
    return run_files[0].model_copy(update={"trial": trial, "provenance": provenance})


def consensus_rows(store: ResultsStore, study: str) -> pd.DataFrame:
    """best_configs rows (fold_id "consensus") per protocol and selecting arm (full's search,
    each algorithm arm's) from the folds' val selections.

    The consensus was never trained: its metric says so (NOT_TRAINED) and its value is empty,
    never a number to read beside the folds' validated ones.
    """
    everything = fold_selections(store, study, arm=None)
    frames = []
    for arm in selected_arms(everything):
        for protocol, rows in of_arm(everything, arm).groupby("protocol", sort=True):
            run_files = [parse_run_file(text) for text in rows["run_file"]]  # data.path stays as stored
            consensus = consensus_run_file(run_files, study)
            frames.append(best_config_rows(study, protocol, CONSENSUS_FOLD, EXPORTED_SELECTION,
                                           consensus, NOT_TRAINED, None, arm=arm))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fold_selections(store: ResultsStore, study: str, arm: str | None = SEARCH) -> pd.DataFrame:
    """The folds' val-selected best_configs rows (no consensus) of `arm`'s search (None: every
    arm's), ordered by protocol and fold."""
    rows = store.read(study, "best_configs", filters={"selection": EXPORTED_SELECTION})
    rows = rows[rows["fold_id"] != CONSENSUS_FOLD]
    if arm is not None:
        rows = of_arm(rows, arm)
    return rows.sort_values(["protocol", "fold_id"], kind="stable").reset_index(drop=True)  # stable: newest last
