"""Helpers for the study tests: tiny study configs over the planted dataset of train_fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heartbeatai.config import flatten_config
from heartbeatai.study.study_config import StudyConfig, parse_study_config
from train_fixtures import CLASSES, tiny_trial


def set_dotted(tree: dict[str, Any], dotted: str, value: Any, sep: str = ".") -> dict[str, Any]:
    """tree["a"]["b"] = value for dotted "a.b", creating the levels in between; returns tree."""
    *parents, leaf = dotted.split(sep)
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return tree


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        set_dotted(tree, dotted, value)
    return tree


def tiny_study(data: Path, storage: Path, name: str = "tiny", **fields: Any) -> StudyConfig:
    """One LODO fold (gamma held out), two search trials of a tiny network, `full` plus the floor."""
    raw = {
        "name": name,
        "data": {"path": str(data)},
        "classes": list(CLASSES),
        "folds": {"domains": ["gamma"]},
        "trial": nested(flatten_config(tiny_trial())),
        "search": {"trials_per_fold": 2},
        "scheduler": {"reduction_factor": 2},
        "arms": ["full", "prevalence"],
        "selection": {"oracle": False},
        "record_views": 0,
        "analysis": {"bootstrap": 20},
        "storage": str(storage),
    }
    raw.update(fields)
    return parse_study_config(raw)


def one_torch_thread() -> None:
    """As in a Ray trial process: torch's thread per core is several times slower for tiny
    models on a loaded 2-core machine."""
    import torch

    torch.set_num_threads(1)


# Columns that differ between two runs of the same seeds by design: times, and where things are.
UNREPEATABLE = ("wall_time_s", "epoch_seconds", "checkpoint_path", "provenance", "study")


def comparable_tables(store, study: str, trial_ids=lambda trial_id: trial_id) -> dict:
    """Every table of `study` as a frame sorted by its identity, without the columns that differ
    between runs of the same seeds by design, and with trial ids mapped through `trial_ids`
    (Tune names trials after a random experiment id; pass a function keeping their index)."""
    import yaml

    from heartbeatai.results import schema

    tables = {}
    for name in schema.TABLES:
        frame = store.read(study, name)
        assert not frame.attrs["corrupt"], (name, frame.attrs["corrupt"])
        if "trial_id" in frame.columns:
            frame = frame.assign(trial_id=frame["trial_id"].map(trial_ids))
        if "run_file" in frame.columns:  # its trial configuration; its data and provenance are paths
            frame = frame.assign(run_file=frame["run_file"].map(lambda text: repr(yaml.safe_load(text)["trial"])))
        frame = frame.drop(columns=[c for c in UNREPEATABLE if c in frame.columns])
        identity = [c for c in schema.table(name).identity if c in frame.columns]
        tables[name] = frame.sort_values(identity, kind="stable").reset_index(drop=True).sort_index(axis=1)
    return tables


def assert_same_tables(got: dict, expected: dict) -> None:
    import pandas as pd

    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, check_dtype=False, obj=name)
