"""Helpers for the study tests: tiny study configs over the planted dataset of train_fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heartbeatai.config import flatten_config
from heartbeatai.study.study_config import StudyConfig, parse_study_config
from train_fixtures import CLASSES, tiny_trial


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
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
