"""Which folds of a prepared dataset a study runs (DESIGN.md, Folds).

Folds belong to the dataset: planned once over every domain by `data folds` and stored
beside it, never recomputed per study or per trial seed. A study only picks among them
(`folds.domains`, `folds.intra_per_domain`) and refuses a folds file planned with other
parameters than its config names, so two studies that claim the same folds have them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heartbeatai.protocols import CROSS_FITTED, parse_fold_id
from heartbeatai.study.study_config import ConfigError, StudyConfig


def planned_folds(config: StudyConfig, data_path: Path, protocol: str) -> list[str]:
    """The study's folds of a protocol, planning them (`data folds`) on first use."""
    from heartbeatai.data.folds import folds_path, read_folds, write_folds

    folds = config.folds
    if not folds_path(data_path, protocol).is_file():
        # Planned over every domain: the file belongs to the dataset, folds.domains picks the ones run.
        write_folds(data_path, protocol, k=folds.k or 5, val_fraction=folds.val_fraction or 0.15,
                    seed=folds.seed or 0)
    table, params = read_folds(data_path, protocol)
    check_fold_parameters(config, params, data_path, protocol)
    return select_folds(config, list(dict.fromkeys(table["fold_id"])), protocol)


def check_fold_parameters(config: StudyConfig, params: dict[str, Any], data_path: Path, protocol: str) -> None:
    """The folds file's parameters agree with those the config names (left out: any)."""
    folds = config.folds
    wanted = {"val_fraction": folds.val_fraction, "fold_seed": folds.seed, "k": folds.k if protocol in CROSS_FITTED else None}
    differing = {k: (params.get(k), v) for k, v in wanted.items() if v is not None and params.get(k) != v}
    if differing:
        raise ConfigError(f"folds: {protocol} folds of {data_path} were planned with other parameters "
                          f"(stored, config): {differing}; plan them again with `heartbeatai data folds`")


def select_folds(config: StudyConfig, fold_ids: list[str], protocol: str) -> list[str]:
    """The fold ids of a plan that the study runs, in plan order."""
    folds = config.folds
    if folds.domains is not None:
        fold_ids = [f for f in fold_ids if parse_fold_id(f).domain in folds.domains]
    parts = folds.parts_per_domain(protocol)
    if parts is not None:
        fold_ids = [f for f in fold_ids if parse_fold_id(f).part < parts]
    return fold_ids
