"""The best_configs table: each fold's selected run file and the consensus across folds (DESIGN.md, Study).

Each fold's search picks its own configuration; the consensus is the one configuration
to train on all sources afterwards: per field of the trial configuration, the median
of the folds' values when the field is numeric, the most frequent value otherwise
(loss kind, booleans, stage lists, fields that are off (None) in some folds). Ties go
to the value of the fold listed first, so the result does not depend on dict order.
"""

from __future__ import annotations

from collections import Counter
from numbers import Real
from typing import Any, Sequence

import numpy as np

import pandas as pd
import yaml

from heartbeatai.config import RunFile, TrialConfig, flatten_config
from heartbeatai.results import ResultsStore
from heartbeatai.results.schema import CONSENSUS_FOLD

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
    keys = flats[0].keys()
    consensus = {key: consensus_value([flat[key] for flat in flats]) for key in keys}
    return configs[0].with_overrides(consensus)


def run_file_text(run_file: RunFile) -> str:
    """The YAML text `RunFile.dump` writes, for the best_configs table."""
    return yaml.safe_dump(run_file.model_dump(mode="json"), sort_keys=False)


def parse_run_file(text: str) -> RunFile:
    """A stored run file's YAML text, validated."""
    return RunFile.model_validate(yaml.safe_load(text))


def best_config_rows(
    study: str,
    protocol: str,
    fold_id: str,
    selection: str,
    run_file: RunFile | str,
    metric: str | None,
    value: float | None,
) -> pd.DataFrame:
    """One best_configs row: a fold's selected run file (or the consensus) and its metric."""
    text = run_file if isinstance(run_file, str) else run_file_text(run_file)
    return pd.DataFrame([{
        "study": study, "protocol": protocol, "fold_id": fold_id, "selection": selection,
        "metric": metric, "value": None if value is None else float(value), "run_file": text,
    }])


def consensus_run_file(run_files: list[RunFile]) -> RunFile:
    """The first run file with its trial configuration replaced by the folds' consensus."""
    trial = consensus_config([r.trial for r in run_files])
    return run_files[0].model_copy(update={"trial": trial})


def consensus_rows(store: ResultsStore, study: str) -> pd.DataFrame:
    """best_configs rows (fold_id "consensus") per protocol from the folds' val selections.

    The consensus was never trained, so its metric is the folds' selection metric and
    its value is left empty.
    """
    folds = fold_selections(store, study)
    frames = []
    for protocol, rows in folds.groupby("protocol", sort=True):
        run_files = [parse_run_file(text) for text in rows["run_file"]]
        consensus = consensus_run_file(run_files)
        frames.append(best_config_rows(study, protocol, CONSENSUS_FOLD, EXPORTED_SELECTION,
                                       consensus, consensus.selection_metric, None))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fold_selections(store: ResultsStore, study: str) -> pd.DataFrame:
    """The folds' val-selected best_configs rows (no consensus), ordered by protocol and fold."""
    rows = store.read(study, "best_configs", filters={"selection": EXPORTED_SELECTION})
    rows = rows[rows["fold_id"] != CONSENSUS_FOLD]
    return rows.sort_values(["protocol", "fold_id"]).reset_index(drop=True)
