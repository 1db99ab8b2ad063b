"""Leak-free evaluation folds: leave-one-domain-out (LODO), intra-source k-fold, and the
matched in-distribution reference.

A fold table has one row per (fold, record): ``fold_id, record_id, split, reason`` with
split in train | val | test | excluded. Fold ids are ``lodo:<domain>``,
``intra:<domain>:<i>`` and ``reference:<domain>:<i>`` (heartbeatai.protocols builds and reads
them; see `reference_folds` for why the reference is cross-fitted over the held-out domain's parts). Training and studies read
the table written by `write_folds`;
they never recompute folds, and folds never depend on a trial's seed.

Leakage control. Records are grouped into connected components of "same patient" (within
a source: patient ids are per-source namespaces) or "same signal" (`hash_exact`, or
`hash_coarse`, which catches one recording re-released in another format, gain or rate,
e.g. PTB-XL's native 00001_lr and the challenge's HR00001). A group is never split
across train/val/test. In LODO, test records whose group reaches into a training domain
(a CPSC-Extra record identical to a CPSC2018 one, say) are moved to ``excluded`` with
reason ``duplicate``; the test side is otherwise the whole held-out domain.

Stratification is at group level, on the union of each group's labels (group_splits.py).

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
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from heartbeatai.data.group_splits import (
    MIN_INTRA_GROUPS, FoldPlanError, derived_seed, duplicate_groups, stratified_group_holdout, stratified_group_kfold,
    stratified_group_sample,
)
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai import protocols
from heartbeatai.protocols import INTRA, LODO, PROTOCOLS, REFERENCE

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "excluded")
FOLD_COLUMNS = ["fold_id", "record_id", "split", "reason"]
DUPLICATE = "duplicate"
UNSAMPLED = "unsampled"  # reference: a pool record outside the size-matched sample
FOLDS_SCHEMA_VERSION = 1
_METADATA_KEY = b"heartbeatai.folds"
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
        fold_id = protocols.fold_id(LODO, held_out)
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
                labels[members], groups[members], val_fraction, derived_seed(seed, "lodo", train_domain)
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


def _domain_parts(labels: np.ndarray, groups: np.ndarray, members: np.ndarray, name: str, k: int, seed: int,
                  protocol: str, skipped: dict[str, str]) -> np.ndarray | None:
    """Part index (0..n-1) of each of a domain's records: the test shares of intra's folds,
    which `reference_folds` reuses so both protocols test on the same parts. None, with the
    reason in `skipped`, for a domain with too few patient/signal groups to part."""
    n_groups = len(np.unique(groups[members]))
    if n_groups < MIN_INTRA_GROUPS:
        skipped[name] = (f"{n_groups} patient/signal group(s): at least {MIN_INTRA_GROUPS} needed for "
                         + ("test, val and train" if protocol == "intra" else "parts to test"))
        log.warning("%s: no folds for domain %s (%s)", protocol, name, skipped[name])
        return None
    return stratified_group_kfold(labels[members], groups[members], k, derived_seed(seed, "intra", name))


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
        fold_of = _domain_parts(labels, groups, members, name, k, seed, "intra", skipped)
        if fold_of is None:
            continue
        n_folds = int(fold_of.max()) + 1
        if n_folds < k:
            log.warning("intra: domain %s has %d groups, so %d folds instead of %d", name, len(np.unique(groups[members])), n_folds, k)
        folds_per_domain[name] = n_folds
        for fold in range(n_folds):
            fold_id = protocols.fold_id(INTRA, name, fold)
            rest = members[fold_of != fold]
            held = stratified_group_holdout(
                labels[rest], groups[rest], val_fraction, derived_seed(seed, "intra-val", name, str(fold))
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


def reference_folds(
    records: pd.DataFrame,
    domains: Sequence[str] | None = None,
    k: int = 5,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """Matched in-distribution reference for each held-out domain: folds ``reference:<d>:<i>``.

    LODO against intra confounds domain shift with data volume; this protocol trains on a
    mixture of every domain with LODO's amount of data. `lodo:<d>` tests all of d, so a
    model that has seen d can only be tested on d out of fold: d is cut into intra's k
    parts (the same partition as ``intra:<d>:<i>``), and fold i tests part i, minus the
    records LODO excludes as cross-domain duplicates (excluded here too, reason
    ``duplicate``). The union of a domain's reference tests is exactly ``lodo:<d>``'s
    test, record for record, so the two pair on every record of d when all k folds run.
    Train and val are drawn from every domain's records outside part i (d's other parts
    included), group-whole and stratified on labels and domain, to the sizes of
    ``lodo:<d>``'s train and val; the pool's remaining records are ``excluded`` with reason
    ``unsampled``. A domain with fewer than 3 groups gets no reference folds.
    """
    if k < 2:
        raise FoldPlanError(f"k must be at least 2, got {k}")
    records = _checked(records, val_fraction)
    domains = _known_domains(records, domains)
    lodo = lodo_folds(records, domains=domains, val_fraction=val_fraction, seed=seed)
    records = records[records["domain"].isin(domains)].reset_index(drop=True)
    groups = duplicate_groups(records)
    labels = _labels(records)
    domain = records["domain"].astype(str).to_numpy()
    ids = records["record_id"].astype(str).to_numpy()
    # Stratify the mixture on the domains as well: it keeps each domain's share of the pool.
    strata = np.hstack([labels, domain[:, None] == np.array(domains)[None, :]])

    frames, folds_per_domain, skipped = [], {}, {}
    for held_out in domains:
        lodo_split = fold_records(lodo, protocols.fold_id(LODO, held_out))
        sizes = {split: len(lodo_split[split]) for split in ("train", "val")}
        duplicate = np.isin(ids, lodo_split["excluded"])
        members = np.flatnonzero(domain == held_out)
        part_of = _domain_parts(labels, groups, members, held_out, k, seed, "reference", skipped)
        if part_of is None:
            continue
        folds_per_domain[held_out] = int(part_of.max()) + 1
        for part in range(folds_per_domain[held_out]):
            fold_id = protocols.fold_id(REFERENCE, held_out, part)
            in_part = np.zeros(len(records), dtype=bool)
            in_part[members[part_of == part]] = True
            pool = np.flatnonzero(~in_part)
            val = pool[stratified_group_sample(strata[pool], groups[pool], sizes["val"],
                                               derived_seed(seed, "reference-val", held_out, str(part)))]
            rest = np.setdiff1d(pool, val)
            train = rest[stratified_group_sample(strata[rest], groups[rest], sizes["train"],
                                                 derived_seed(seed, "reference-train", held_out, str(part)))]
            unsampled = np.setdiff1d(rest, train)
            frames += [
                _fold_frame(fold_id, ids[train], "train"),
                _fold_frame(fold_id, ids[val], "val"),
                _fold_frame(fold_id, ids[in_part & ~duplicate], "test"),
                _fold_frame(fold_id, ids[in_part & duplicate], "excluded", DUPLICATE),
                _fold_frame(fold_id, ids[unsampled], "excluded", UNSAMPLED),
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
    if protocol == LODO:
        table = lodo_folds(records, domains=domains, val_fraction=val_fraction, seed=seed)
    elif protocol == REFERENCE:
        table = reference_folds(records, domains=domains, k=k, val_fraction=val_fraction, seed=seed)
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
