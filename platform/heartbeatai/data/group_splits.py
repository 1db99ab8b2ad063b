"""Splitting records into groups that never straddle a split, and splitting the groups.

A group is a connected component of "same patient" (patient ids are per-source namespaces)
or "same signal" (`hash_exact`, or `hash_coarse`, which catches one recording re-released
in another format, gain or rate). iterative-stratification (Sechidis et al. 2011) ignores
groups, so the groups themselves are stratified on the union of their members' labels and
then expanded to their records; an extra "no scored label" column keeps unlabelled groups
evenly spread too (and gives the stratifier the two columns it requires). folds.py builds
the protocols from these pieces.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# An intra-source domain needs a test, a val and a train group.
MIN_INTRA_GROUPS = 3


class FoldPlanError(ValueError):
    """Parameters or records that no fold plan can be made from (one-line message)."""


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


def derived_seed(seed: int, *keys: str) -> int:
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
    if n < MIN_INTRA_GROUPS:
        raise FoldPlanError(f"{n} group(s) cannot make folds with test, val and train groups")
    k = min(k, n)
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold  # imports scikit-learn: planning only

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
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # scikit-learn: planning only

    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_held, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(unique)), group_labels))
    if not 0 < len(held) < len(unique):
        # On a few groups the stratifier can hold out none (label demand outweighs the
        # target size); stratification means little there, so draw the share at random.
        held = np.random.default_rng(seed).choice(len(unique), size=n_held, replace=False)
    return np.isin(groups, unique[held])


def stratified_group_sample(labels: np.ndarray, groups: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Boolean mask of a label-stratified, group-whole subset of `size` records.

    The groups are stratified at the share `size / records`, then whole groups are
    added or dropped (the one that brings the count closest first, ties in seeded order)
    until no single group moves the count closer: with singleton groups the size is
    exact, otherwise within the smallest group that could still be moved.
    """
    n = len(groups)
    if size >= n:
        return np.ones(n, dtype=bool)
    if size <= 0:
        return np.zeros(n, dtype=bool)
    unique, group_labels = _group_label_matrix(labels, groups)
    counts = np.bincount(np.searchsorted(unique, groups), minlength=len(unique))
    chosen = np.zeros(len(unique), dtype=bool)
    if len(unique) > 1:
        n_take = int(np.clip(round(size / n * len(unique)), 1, len(unique) - 1))
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_take, random_state=seed)
        _, take = next(splitter.split(np.zeros(len(unique)), group_labels))
        chosen[take] = True
    rank = np.random.default_rng(seed).permutation(len(unique))  # tie-break, seeded
    total = int(counts[chosen].sum())
    while total != size:
        removing = total > size
        candidates = np.flatnonzero(chosen if removing else ~chosen)
        after = total - counts[candidates] if removing else total + counts[candidates]
        gap = np.abs(after - size)
        best = candidates[np.lexsort((rank[candidates], gap))[0]]
        new_total = total - counts[best] if removing else total + counts[best]
        if abs(new_total - size) >= abs(total - size):
            break
        chosen[best] = not removing
        total = int(new_total)
    return np.isin(groups, unique[chosen])
