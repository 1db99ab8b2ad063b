"""Model-selection rules, one small class each, named after what they select on (DomainBed).

`TrainingDomainValidation` is the protocol: it sees the trials table (validation metrics of
the training domains) and nothing of the held-out domain. `TestDomainOracle` is an upper
bound only: it picks by test-domain scores of saved checkpoints, which exist only after the
validation-selected model has been tested (fold_runner.py keeps that order).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import pandas as pd

from heartbeatai.config import TrialConfig, flatten_config, trial_from_plain
from heartbeatai.results.schema import SCORED_STATUSES


class SelectionError(RuntimeError):
    """No trial of the fold can be selected (all errored, or none reported the metric)."""


@dataclass(frozen=True)
class Selection:
    trial_id: str
    checkpoint_path: str
    metric: str
    value: float
    trial: TrialConfig

    def record(self) -> dict[str, Any]:
        """Plain data, for the journal."""
        return {**asdict(self), "trial": self.trial.model_dump(mode="json")}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Selection":
        """From the journal (a boundary: its trial is validated here)."""
        return cls(**{**record, "trial": trial_from_plain(record["trial"])})


class TrainingDomainValidation:
    """Best selection_value among the fold's finished search trials (ASHA-stopped included)."""

    name = "val"

    def select(self, trials: pd.DataFrame, base: TrialConfig, mode: str) -> Selection:
        latest = trials.drop_duplicates("trial_id", keep="last")
        eligible = latest[
            latest["status"].isin(SCORED_STATUSES) & latest["selection_value"].notna() & latest["checkpoint_path"].notna()
        ]
        if eligible.empty:
            raise SelectionError(f"no finished trial with a checkpoint among {len(latest)} trials")
        best = eligible.loc[eligible["selection_value"].idxmax() if mode == "max" else eligible["selection_value"].idxmin()]
        return Selection(
            trial_id=str(best["trial_id"]),
            checkpoint_path=str(best["checkpoint_path"]),
            metric=str(best["selection_metric"]),
            value=float(best["selection_value"]),
            trial=config_of_row(best, base),
        )


class TestDomainOracle:
    """The trial whose saved checkpoint scores best on the test domain: an upper bound, never the result."""

    name = "oracle"

    def select(self, test_values: Mapping[str, float], trials: pd.DataFrame, base: TrialConfig,
               metric: str, mode: str) -> Selection:
        if not test_values:
            raise SelectionError("no checkpoint was scored on the test domain")
        pick = (max if mode == "max" else min)(test_values, key=test_values.__getitem__)
        row = trials.drop_duplicates("trial_id", keep="last").set_index("trial_id").loc[pick]
        return Selection(
            trial_id=pick,
            checkpoint_path=str(row["checkpoint_path"]),
            metric=metric,
            value=float(test_values[pick]),
            trial=config_of_row(row, base),
        )


def config_of_row(row: pd.Series, base: TrialConfig) -> TrialConfig:
    """The trial configuration a trials row was run with, from its cfg.<dotted> columns.

    Every cfg column the row has a value in counts, not only `base`'s keys: a row may have run
    another loss kind than the base, with that kind's own parameters (the others are empty)."""
    lists = {key for key, default in flatten_config(base).items() if isinstance(default, list)}
    overrides = {}
    for column, value in row.items():
        if not str(column).startswith("cfg."):
            continue
        if value is None or (not isinstance(value, (list, str)) and pd.isna(value)):
            continue
        if hasattr(value, "item"):  # numpy scalars from the Parquet row
            value = value.item()
        key = str(column)[len("cfg."):]
        # List-valued fields travel as JSON text in the flat cfg columns.
        overrides[key] = json.loads(value) if key in lists and isinstance(value, str) else value
    return base.with_overrides(overrides, inactive="drop")
