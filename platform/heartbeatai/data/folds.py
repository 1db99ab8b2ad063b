"""Leak-free evaluation folds: leave-one-domain-out (LODO) and intra-source k-fold.

A fold table has one row per (fold, record): ``fold_id, record_id, split, reason`` with
split in train | val | test | excluded. Fold ids are ``lodo:<domain>`` and
``intra:<domain>:<i>``. Training and studies read the table written by `write_folds`;
they never recompute folds, and folds never depend on a trial's seed.

Leakage control. Records are grouped into connected components of "same patient" (within
a source: patient ids are per-source namespaces) or "same signal" (`hash_exact`, or
`hash_coarse`, which catches one recording re-released in another format, gain or rate,
e.g. PTB-XL's native 00001_lr and the challenge's HR00001). A group is never split
across train/val/test. In LODO, test records whose group reaches into a training domain
(a CPSC-Extra record identical to a CPSC2018 one, say) are moved to ``excluded`` with
reason ``duplicate``; the test side is otherwise the whole held-out domain.

Stratification. iterative-stratification (Sechidis et al. 2011) ignores groups, so we
stratify the groups themselves on the union of their members' labels and then expand
each group to its records. An extra "no scored label" column keeps unlabelled groups
evenly spread too (and gives the stratifier the two columns it requires).

Small domains. A LODO training domain with a single group gives no validation records.
An intra domain needs 3 groups (one each for test, val and train): with fewer it gets no
folds; a domain too small for k stratified folds gets fewer (see `stratified_group_kfold`);
both are reported in the table's ``attrs["skipped_domains"]`` / ``attrs["folds_per_domain"]`` and stored with the
parameters by `write_folds`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from heartbeatai.data.prepared import PreparedDataset

log = logging.getLogger(__name__)

PROTOCOLS = ("lodo", "intra")
SPLITS = ("train", "val", "test", "excluded")
FOLD_COLUMNS = ["fold_id", "record_id", "split", "reason"]
DUPLICATE = "duplicate"
FOLDS_SCHEMA_VERSION = 1
_METADATA_KEY = b"heartbeatai.folds"
_MIN_INTRA_GROUPS = 3


class FoldPlanError(ValueError):
    """Parameters or records that no fold plan can be made from (one-line message)."""


# ----------------------------------------------------------------------------- labels


def label_columns(records: pd.DataFrame) -> list[str]:
    """The ``cls_<ABBR>`` columns of a record index, in their stored order."""
    return [c for c in records.columns if c.startswith("cls_")]


def present_classes(labels_bool: np.ndarray | pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Classes with at least one positive and one negative in an evaluated set.

    Only these have a defined AUROC/AUPRC; macro averages run over them and say which.
    """
    labels = np.asarray(labels_bool, dtype=bool)
    if labels.ndim != 2 or labels.shape[1] != len(classes):
        raise ValueError(f"labels of shape {labels.shape} do not match {len(classes)} classes")
    positives = labels.sum(axis=0)
    return [c for c, n in zip(classes, positives) if 0 < n < labels.shape[0]]


# ----------------------------------------------------------------------------- groups


def duplicate_groups(records: pd.DataFrame) -> np.ndarray:
    """Group id per record: connected components of same patient or same signal hash.

    Patient ids are qualified by domain (sources number their patients independently);
    hashes are global, so a recording re-released by another source joins its original.
    Missing ids and hashes link nothing.
    """
    n = len(records)
    if n == 0:
        return np.empty(0, dtype=int)

    def key(prefix: pd.Series | str, values: pd.Series) -> pd.Series:
        text = values.astype(str)
        return (prefix + "\x1f" + text).where(values.notna() & (text != ""))

    keys = [key(records["domain"].astype(str), records["patient_id"])]
    keys += [key(column, records[column]) for column in ("hash_exact", "hash_coarse") if column in records]
    rows, nodes = [], []
    offset = n
    for key in keys:
        codes, uniques = pd.factorize(key, use_na_sentinel=True)
        linked = codes >= 0
        rows.append(np.flatnonzero(linked))
        nodes.append(codes[linked] + offset)
        offset += len(uniques)
    # Bipartite graph record -- key; its components restricted to records are the groups.
    row, col = np.concatenate(rows), np.concatenate(nodes)
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)
    # Renumber in record order so group ids do not depend on how keys were factorised.
    return pd.factorize(component[:n])[0]


def _group_label_matrix(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique group ids, union of member labels per group plus a 'no label' column).

    Classes without a positive are dropped: the stratifier breaks ties by column, so
    keeping them would make a plan depend on the vocabulary rather than on the labels.
    """
    unique, inverse = np.unique(groups, return_inverse=True)
    union = np.zeros((len(unique), labels.shape[1]), dtype=bool)
    np.logical_or.at(union, inverse, labels)
    union = union[:, union.any(axis=0)]
    unlabelled = ~union.any(axis=1, keepdims=True)
    matrix = np.hstack([union, unlabelled])
    if matrix.shape[1] < 2:  # iterstrat accepts only a multilabel-indicator matrix
        matrix = np.hstack([matrix, np.zeros_like(unlabelled)])
    return unique, matrix.astype(np.int8)


def _derived_seed(seed: int, *keys: str) -> int:
    """A stable seed for (fold seed, names): not Python's hash(), which is salted per run."""
    words = [seed] + [zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def stratified_group_kfold(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per record, 0..n_folds-1; groups whole, label-stratified at group level.

    Every fold leaves at least two groups outside its test share, so a val and a train
    group remain. Iterative stratification follows label demand rather than fold sizes,
    so on a handful of groups it can miss that (or leave a fold empty); such a domain is
    dealt round-robin in seeded order instead, into min(k, groups) folds, or one fold
    per group when that is what it takes (3 groups, k = 2).
    """
    unique, group_labels = _group_label_matrix(labels, groups)
    n = len(unique)
    if n < _MIN_INTRA_GROUPS:
        raise FoldPlanError(f"{n} group(s) cannot make folds with test, val and train groups")
    k = min(k, n)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    group_fold = np.empty(n, dtype=int)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(n), group_labels)):
        group_fold[test] = fold
    sizes = np.bincount(group_fold, minlength=k)
    if sizes.min() == 0 or n - sizes.max() < 2:
        while n - -(-n // k) < 2:  # the largest round-robin fold, ceil(n / k), must leave 2
            k += 1
        group_fold = np.empty(n, dtype=int)
        group_fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return group_fold[np.searchsorted(unique, groups)]


def stratified_group_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a held-out share of the groups (at least one, never all).

    Empty when there are fewer than two groups: nothing can be held out and still train.
    """
    unique, group_labels = _group_label_matrix(labels, groups)
    if len(unique) < 2:
        return np.zeros(len(groups), dtype=bool)
    n_held = int(np.clip(round(fraction * len(unique)), 1, len(unique) - 1))
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_held, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(unique)), group_labels))
    if not 0 < len(held) < len(unique):
        # On a few groups the stratifier can hold out none (label demand outweighs the
        # target size); stratification means little there, so draw the share at random.
        held = np.random.default_rng(seed).choice(len(unique), size=n_held, replace=False)
    return np.isin(groups, unique[held])


# ----------------------------------------------------------------------------- protocols


def _checked(records: pd.DataFrame, val_fraction: float) -> pd.DataFrame:
    missing = [c for c in ("record_id", "domain", "patient_id") if c not in records]
    if missing:
        raise FoldPlanError(f"records lack column(s) {', '.join(missing)}")
    if not 0.0 < val_fraction < 1.0:
        raise FoldPlanError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if records["record_id"].duplicated().any():
        dup = records.loc[records["record_id"].duplicated(), "record_id"].iloc[0]
        raise FoldPlanError(f"record_id {dup!r} occurs more than once")
    # A fixed order makes every plan a function of (records, parameters, seed) only.
    return records.sort_values("record_id", kind="stable").reset_index(drop=True)


def _known_domains(records: pd.DataFrame, domains: Sequence[str] | None) -> list[str]:
    available = sorted(records["domain"].astype(str).unique())
    if domains is None:
        return available
    unknown = sorted(set(domains) - set(available))
    if unknown:
        raise FoldPlanError(f"unknown domain(s) {', '.join(unknown)}; the dataset has {', '.join(available)}")
    return sorted(set(domains))


def _labels(records: pd.DataFrame) -> np.ndarray:
    columns = sorted(label_columns(records))  # independent of the stored column order
    return records[columns].fillna(False).to_numpy(dtype=bool) if columns else np.zeros((len(records), 0), bool)


def _fold_frame(fold_id: str, record_ids: Iterable[str], split: str, reason: str | None = None) -> pd.DataFrame:
    ids = list(record_ids)
    return pd.DataFrame({"fold_id": fold_id, "record_id": ids, "split": split, "reason": [reason] * len(ids)})


def _assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in FOLD_COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    return table.astype({"fold_id": "string", "record_id": "string", "split": "string", "reason": "string"})


def lodo_folds(
    records: pd.DataFrame,
    domains: Sequence[str] | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """Leave-one-domain-out folds over `domains` (default: every domain in `records`).

    Fold ``lodo:<d>``: test = all of domain d except records whose duplicate group
    reaches a training domain (excluded, reason ``duplicate``); train/val = the other
    domains, val a group-whole, label-stratified `val_fraction` of each training domain.
    Records of domains outside `domains` take no part. A training domain's validation
    share is drawn with a seed of (seed, domain), so it is the same in every fold that
    trains on it (unless a duplicate group spans the held-out domain).
    """
    records = _checked(records, val_fraction)
    domains = _known_domains(records, domains)
    if len(domains) < 2:
        raise FoldPlanError(f"LODO needs at least two domains, got {', '.join(domains) or 'none'}")
    records = records[records["domain"].isin(domains)].reset_index(drop=True)
    groups = duplicate_groups(records)
    labels = _labels(records)
    domain = records["domain"].astype(str).to_numpy()
    ids = records["record_id"].astype(str).to_numpy()

    frames = []
    for held_out in sorted(domains):
        fold_id = f"lodo:{held_out}"
        is_test = domain == held_out
        leaked = np.isin(groups, groups[~is_test]) & is_test
        # A group spanning several training domains belongs to the domain of its first
        # record, so it is held out (or not) as a whole.
        training = np.flatnonzero(~is_test)
        first = pd.Series(domain[training]).groupby(groups[training]).first()
        home = first.reindex(groups[training]).to_numpy()
        is_val = np.zeros(len(records), dtype=bool)
        for train_domain in sorted(set(domains) - {held_out}):
            members = training[home == train_domain]
            held = stratified_group_holdout(
                labels[members], groups[members], val_fraction, _derived_seed(seed, "lodo", train_domain)
            )
            is_val[members[held]] = True
        frames += [
            _fold_frame(fold_id, ids[~is_test & ~is_val], "train"),
            _fold_frame(fold_id, ids[is_val], "val"),
            _fold_frame(fold_id, ids[is_test & ~leaked], "test"),
            _fold_frame(fold_id, ids[leaked], "excluded", DUPLICATE),
        ]
        if leaked.any():
            log.info("%s: %d test record(s) excluded as duplicates of training data", fold_id, leaked.sum())
    return _assemble(frames)


def intra_folds(records: pd.DataFrame, k: int = 5, val_fraction: float = 0.15, seed: int = 0) -> pd.DataFrame:
    """k-fold cross-validation within each domain: folds ``intra:<domain>:<i>``.

    Test = fold i's groups, val = a label-stratified `val_fraction` of the other groups,
    train = the rest. A domain with fewer than 3 groups gets no folds, a very small one
    fewer than k (`stratified_group_kfold`): see ``attrs["folds_per_domain"]`` and
    ``attrs["skipped_domains"]``.
    """
    if k < 2:
        raise FoldPlanError(f"k must be at least 2, got {k}")
    records = _checked(records, val_fraction)
    groups = duplicate_groups(records)
    labels = _labels(records)
    domain = records["domain"].astype(str).to_numpy()
    ids = records["record_id"].astype(str).to_numpy()

    frames, folds_per_domain, skipped = [], {}, {}
    for name in sorted(set(domain)):
        members = np.flatnonzero(domain == name)
        n_groups = len(np.unique(groups[members]))
        if n_groups < _MIN_INTRA_GROUPS:
            skipped[name] = f"{n_groups} patient/signal group(s): at least {_MIN_INTRA_GROUPS} needed for test, val and train"
            log.warning("intra: no folds for domain %s (%s)", name, skipped[name])
            continue
        fold_of = stratified_group_kfold(labels[members], groups[members], k, _derived_seed(seed, "intra", name))
        n_folds = int(fold_of.max()) + 1
        if n_folds < k:
            log.warning("intra: domain %s has %d groups, so %d folds instead of %d", name, n_groups, n_folds, k)
        folds_per_domain[name] = n_folds
        for fold in range(n_folds):
            fold_id = f"intra:{name}:{fold}"
            rest = members[fold_of != fold]
            held = stratified_group_holdout(
                labels[rest], groups[rest], val_fraction, _derived_seed(seed, "intra-val", name, str(fold))
            )
            frames += [
                _fold_frame(fold_id, ids[rest[~held]], "train"),
                _fold_frame(fold_id, ids[rest[held]], "val"),
                _fold_frame(fold_id, ids[members[fold_of == fold]], "test"),
            ]
    table = _assemble(frames)
    table.attrs["folds_per_domain"] = folds_per_domain
    table.attrs["skipped_domains"] = skipped
    return table


# ----------------------------------------------------------------------------- on disk


def folds_path(dataset_dir: str | os.PathLike, protocol: str) -> Path:
    if protocol not in PROTOCOLS:
        raise FoldPlanError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return Path(dataset_dir) / "folds" / f"{protocol}.parquet"


def write_folds(
    dataset_dir: str | os.PathLike,
    protocol: str,
    k: int = 5,
    val_fraction: float = 0.15,
    seed: int = 0,
    domains: Sequence[str] | None = None,
) -> Path:
    """Plan `protocol`'s folds for a prepared dataset and write DIR/folds/<protocol>.parquet.

    The file is written under a temporary name and renamed into place, so a reader never
    sees half of it; the parameters (and the dataset fingerprint) travel in its schema
    metadata, read back by `read_folds`.
    """
    path = folds_path(dataset_dir, protocol)
    dataset = PreparedDataset(dataset_dir)
    records = dataset.records
    if protocol == "lodo":
        table = lodo_folds(records, domains=domains, val_fraction=val_fraction, seed=seed)
    else:
        if domains is not None:
            records = records[records["domain"].isin(_known_domains(records, domains))]
        table = intra_folds(records, k=k, val_fraction=val_fraction, seed=seed)
    params: dict[str, Any] = {
        "schema_version": FOLDS_SCHEMA_VERSION,
        "protocol": protocol,
        "k": k,
        "val_fraction": val_fraction,
        "fold_seed": seed,
        "domains": sorted(set(domains)) if domains is not None else None,
        "dataset_fingerprint": dataset.fingerprint,
        "folds_per_domain": table.attrs.get("folds_per_domain"),
        "skipped_domains": table.attrs.get("skipped_domains"),
    }
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), _METADATA_KEY: json.dumps(params)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{protocol}.", suffix=".parquet.tmp")
    os.close(fd)
    try:
        pq.write_table(arrow, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_folds(dataset_dir: str | os.PathLike, protocol: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(fold table, parameters it was planned with) from DIR/folds/<protocol>.parquet."""
    path = folds_path(dataset_dir, protocol)
    if not path.is_file():
        raise FileNotFoundError(f"no {protocol} folds in {dataset_dir}: run `heartbeatai data folds {dataset_dir} --protocol {protocol}`")
    arrow = pq.read_table(path)
    params = json.loads((arrow.schema.metadata or {}).get(_METADATA_KEY, b"{}"))
    table = arrow.to_pandas()
    table.attrs.clear()  # pandas copies arrow metadata into attrs; params are returned instead
    return table, params


def fold_ids(dataset_dir: str | os.PathLike, protocol: str) -> list[str]:
    """The fold ids of a written plan, in plan order."""
    table, _ = read_folds(dataset_dir, protocol)
    return list(dict.fromkeys(table["fold_id"]))


def fold_records(folds: pd.DataFrame, fold_id: str) -> dict[str, list[str]]:
    """split -> record ids of one fold, every split present (possibly empty)."""
    rows = folds[folds["fold_id"] == fold_id]
    if rows.empty:
        known = ", ".join(dict.fromkeys(folds["fold_id"]))
        raise KeyError(f"no fold {fold_id!r}; the plan has {known}")
    return {split: rows.loc[rows["split"] == split, "record_id"].astype(str).tolist() for split in SPLITS}
