"""From a prepared dataset to torch batches: window crops, sliding windows, samplers.

Training sees one random crop per record per epoch; evaluation covers each record with
overlapping windows and takes the maximum score per class over them (a rhythm event
in any window flags the record, the usual rule for variable-length 12-lead records).

Sampling is a pure function of (seed, epoch): the permutation, the crop offsets and
the domain pairs of an epoch come from a generator seeded with both. A sampler's
checkpoint state is therefore its epoch, and a resumed run draws exactly what an
uninterrupted one would. Under DDP every rank draws the same global order and keeps
its own share, as torch's DistributedSampler does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.training.transforms import SignalTransform


@dataclass(frozen=True)
class RecordSet:
    """The records of one split and what the loop needs of each (aligned arrays)."""

    record_ids: tuple[str, ...]
    rows: np.ndarray  # int64 positions in the PreparedDataset
    lengths: np.ndarray  # int64 samples
    labels: np.ndarray  # float32 (N, C)
    demographics: np.ndarray | None  # float32 (N, 3), None when the model takes none
    domains: np.ndarray  # int64 (N,), ids from the training domains' order

    def __len__(self) -> int:
        return len(self.rows)


def record_set(
    dataset: PreparedDataset,
    record_ids: Sequence[str],
    classes: Sequence[str],
    *,
    demographics: bool,
    domain_ids: dict[str, int],
) -> RecordSet:
    """Index, lengths, labels and domains of the given records only.

    Domains outside `domain_ids` (the held-out one) get -1: MixStyle never sees them,
    since it is off in evaluation.
    """
    rows = dataset.index_of(record_ids)
    index = dataset.records.iloc[rows]
    return RecordSet(
        record_ids=tuple(record_ids),
        rows=rows,
        lengths=index["length"].to_numpy(np.int64),
        labels=dataset.labels(classes)[rows].astype(np.float32),
        demographics=dataset.demographics()[rows] if demographics else None,
        domains=index["domain"].map(lambda d: domain_ids.get(d, -1)).to_numpy(np.int64),
    )


# Band-passed whole records kept per dataset object (so per process and per DataLoader worker):
# 256 MiB holds 5,600 records of 10 s at 100 Hz, 1,100 at 500 Hz.
FILTERED_RECORDS_BYTES = 256 * 2**20


class FilteredRecords:
    """Band-passed whole records, kept while they fit `max_bytes`.

    A record no longer than a window plus the filter's context on both sides (10 s records at a
    5 s window and a 0.5 Hz cutoff) is filtered whole for every window of it, so each crop of
    each epoch would filter the same samples again: filtering was half of a small trial's time.
    First come, first kept; a record that does not fit is filtered on every read, as before.
    """

    def __init__(self, max_bytes: int = FILTERED_RECORDS_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: dict[int, np.ndarray] = {}
        self._bytes = 0

    def __getstate__(self) -> dict:
        # Each process keeps its own: a loader worker (forkserver: the dataset is pickled to it)
        # starts empty instead of receiving up to max_bytes of the parent's.
        return {"max_bytes": self.max_bytes, "_kept": {}, "_bytes": 0}

    def whole(self, dataset: PreparedDataset, row: int, transform: SignalTransform) -> np.ndarray:
        kept = self._kept.get(row)
        if kept is not None:
            return kept
        filtered = transform.filter(dataset.window(row, 0, dataset.length(row)))
        if self._bytes + filtered.nbytes <= self.max_bytes:
            self._kept[row] = filtered
            self._bytes += filtered.nbytes
        return filtered


def read_window(
    dataset: PreparedDataset,
    row: int,
    start: int,
    length: int,
    transform: SignalTransform,
    filtered: FilteredRecords | None = None,
) -> np.ndarray:
    """float32 (12, length) preprocessed: band-passed with up to `transform.margin` samples of the
    record's own context on each side, then zero-padded past the record's end when the record is
    shorter than the window.

    The context stops at the record's ends: zeros read past the end before filtering would be a
    step from the lead's level to 0, on which the filter rings into a window flush with the end.
    """
    n = dataset.length(row)
    margin = transform.margin
    context_start = max(0, start - margin)
    context_stop = min(n, start + length + margin)
    if filtered is not None and context_start == 0 and context_stop == n:
        x = filtered.whole(dataset, row, transform)
    else:
        x = transform.filter(dataset.window(row, context_start, context_stop - context_start))
    lead_in = start - context_start
    window = np.array(x[:, lead_in : lead_in + length], dtype=np.float32)  # a copy: never a view of a kept record
    if window.shape[1] < length:
        window = np.pad(window, ((0, 0), (0, length - window.shape[1])))
    return transform.standardize(window)


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Window offsets covering [0, length): strided, plus one flush with the end."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    if starts[-1] != length - window:
        starts = np.append(starts, length - window)
    return starts


def max_aggregate(window_record: np.ndarray, window_scores: np.ndarray, n_records: int) -> np.ndarray:
    """(n_records, C) maximum over each record's windows of (W, C) scores."""
    out = np.full((n_records, window_scores.shape[1]), -np.inf, dtype=window_scores.dtype)
    np.maximum.at(out, window_record, window_scores)
    if np.isneginf(out).any():
        raise ValueError("a record has no window: window_record does not cover every record")
    return out


class CropDataset(Dataset):
    """Training items: indexed by (record index, crop start) pairs from the samplers."""

    def __init__(
        self, dataset: PreparedDataset, records: RecordSet, crop_len: int, transform: SignalTransform
    ) -> None:
        self.dataset = dataset
        self.records = records
        self.crop_len = crop_len
        self.transform = transform
        self.filtered = FilteredRecords()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, start = item
        x = read_window(self.dataset, int(self.records.rows[i]), start, self.crop_len, self.transform, self.filtered)
        return _item(self.records, i, x)


class SlidingWindowDataset(Dataset):
    """Evaluation items: every window of every record, with the record's index."""

    def __init__(
        self,
        dataset: PreparedDataset,
        records: RecordSet,
        window_len: int,
        stride: int,
        transform: SignalTransform,
    ) -> None:
        self.dataset = dataset
        self.records = records
        self.window_len = window_len
        self.transform = transform
        self.filtered = FilteredRecords()
        per_record = [window_starts(int(n), window_len, stride) for n in records.lengths]
        self.window_record = np.repeat(np.arange(len(records)), [len(s) for s in per_record])
        self.window_start = np.concatenate(per_record) if per_record else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.window_record)

    def __getitem__(self, w: int) -> dict[str, torch.Tensor]:
        i = int(self.window_record[w])
        start = int(self.window_start[w])
        x = read_window(self.dataset, int(self.records.rows[i]), start, self.window_len, self.transform, self.filtered)
        item = _item(self.records, i, x)
        item["record"] = torch.tensor(i)
        return item


def _item(records: RecordSet, i: int, x: np.ndarray) -> dict[str, torch.Tensor]:
    item = {
        "x": torch.from_numpy(x),
        "y": torch.from_numpy(records.labels[i]),
        "domain": torch.tensor(records.domains[i]),
    }
    if records.demographics is not None:
        item["demographics"] = torch.from_numpy(records.demographics[i])
    return item


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def crop_offsets(rng: np.random.Generator, lengths: np.ndarray, crop_len: int) -> np.ndarray:
    """A uniform crop start per record; records shorter than the crop start at 0 (padded)."""
    return rng.integers(0, np.maximum(lengths - crop_len, 0) + 1)


class _EpochSampler:
    """Seed/epoch/shard bookkeeping shared by the two training samplers."""

    def __init__(self, seed: int, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state is for seed {state['seed']}, this run has seed {self.seed}")
        self.epoch = int(state["epoch"])


class CropSampler(_EpochSampler, Sampler):
    """One random crop of every record per epoch, shuffled; this rank's share of it.

    Like DistributedSampler (drop_last=False), the global order is padded with its own
    head so every rank gets the same number of items.
    """

    def __init__(self, lengths: np.ndarray, crop_len: int, *, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(seed, num_replicas, rank)
        if len(lengths) == 0:
            raise ValueError("no training records")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.crop_len = crop_len
        self.per_rank = -(-len(self.lengths) // num_replicas)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = epoch_generator(self.seed, self.epoch)
        order = rng.permutation(len(self.lengths))
        starts = crop_offsets(rng, self.lengths, self.crop_len)
        total = self.per_rank * self.num_replicas
        order = np.resize(order, total)  # repeats the head to pad
        mine = order[self.rank : total : self.num_replicas]
        return iter([(int(i), int(starts[i])) for i in mine])


class TwoDomainBatchSampler(_EpochSampler, Sampler):
    """Batches of two half-batches from two training domains; each record once per epoch.

    Cross-domain MixStyle (Zhou et al., ICLR 2021) swaps feature statistics between
    samples of different domains; a batch from one domain would leave it nothing to
    mix. Drawing each batch's two domains by size without replacement over-draws small
    domains (records 60/30/10% by domain became samples 45/37/17%), which changes the
    training distribution along with MixStyle. So an epoch is dealt, not drawn:

    1. each domain's records, shuffled, are dealt into half-batches of batch_size // 2
       (its last one short when the size does not divide its count);
    2. half-batches of different domains are paired at random (`pair_half_batches`);
    3. the batches are shuffled.

    Every record is then drawn exactly once per epoch, as plain shuffling draws it, and
    each domain's share of the samples is its share of the records. Where pairing
    cannot be had, records still count once:

    - a dominant domain, with more half-batches than all others together, pairs its
      surplus with itself: those batches hold one domain and MixStyle leaves them
      unmixed. A domain with a share s > 1/2 of the records puts about 2s - 1 of the
      batches in one domain (records 60/30/10%: a fifth of the batches);
    - an odd number of half-batches leaves one as a batch of its own (half size);
    - an odd batch size b gives batches of b - 1: pairing needs equal halves;
    - at most one batch per domain is short (it holds that domain's short half-batch).

    Under DDP every rank computes the same global batches and takes every
    num_replicas-th; like DistributedSampler, the list is padded with its own head so
    every rank gets the same number of batches, so up to num_replicas - 1 batches of an
    epoch are drawn twice.
    """

    def __init__(
        self,
        domains: np.ndarray,
        lengths: np.ndarray,
        crop_len: int,
        batch_size: int,
        *,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        super().__init__(seed, num_replicas, rank)
        self.domains = np.asarray(domains, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.crop_len = crop_len
        self.batch_size = batch_size
        self.domain_ids = np.unique(self.domains)
        if len(self.domain_ids) < 2:
            raise ValueError("mixstyle.mix: crossdomain needs at least two training domains")
        if batch_size < 2:
            raise ValueError("optim.batch_size: crossdomain batches need at least 2 samples per worker")
        self.half = batch_size // 2
        self.members = [np.flatnonzero(self.domains == d) for d in self.domain_ids]
        self.batches_per_epoch = paired_batch_count([-(-len(m) // self.half) for m in self.members])
        self.per_rank = -(-self.batches_per_epoch // num_replicas)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = epoch_generator(self.seed, self.epoch)
        starts = crop_offsets(rng, self.lengths, self.crop_len)
        pools = []
        for members in self.members:
            shuffled = rng.permutation(members)
            pools.append(np.split(shuffled, np.arange(self.half, len(shuffled), self.half)))
        batches = pair_half_batches(pools, rng)
        total = self.per_rank * self.num_replicas
        padded = [batches[k % len(batches)] for k in range(total)]  # repeats the head to pad
        return iter([[(int(i), int(starts[i])) for i in b] for b in padded[self.rank : total : self.num_replicas]])


def paired_batch_count(half_batches: Sequence[int]) -> int:
    """How many batches `pair_half_batches` makes of pools with these half-batch counts."""
    total, largest = sum(half_batches), max(half_batches)
    surplus = max(0, largest - (total - largest))
    return -(-surplus // 2) + -(-(total - surplus) // 2)


def pair_half_batches(pools: Sequence[Sequence[np.ndarray]], rng: np.random.Generator) -> list[np.ndarray]:
    """Every half-batch of every pool (one pool per domain) in exactly one batch, shuffled.

    Pairs are drawn at random: a half-batch with probability proportional to its pool's
    size, its partner likewise from the other pools. Random pairing alone can strand
    half-batches of one domain at the end; a multiset of half-batches pairs up across
    domains (bar one when the count is odd) exactly when no pool holds more than half
    of it, rounded up. So a pool at that bound is always paired next, which keeps the
    bound for what remains. A pool beyond it from the start (a dominant domain) first
    pairs its surplus with itself, in batches of one domain.
    """
    pools = [list(p) for p in pools]
    counts = np.array([len(p) for p in pools])
    largest = int(np.argmax(counts))
    surplus = int(counts[largest] - (counts.sum() - counts[largest]))
    batches = []
    if surplus > 0:
        own, pools[largest] = pools[largest][:surplus], pools[largest][surplus:]
        batches += [np.concatenate(own[k : k + 2]) for k in range(0, surplus, 2)]
    counts = np.array([len(p) for p in pools])
    while (remaining := int(counts.sum())) > 0:
        if remaining == 1:
            batches.append(pools[int(np.argmax(counts))].pop())
            break
        bound = np.flatnonzero(counts == -(-remaining // 2))
        first = int(bound[0]) if len(bound) else int(rng.choice(len(pools), p=counts / remaining))
        others = counts.copy()
        others[first] = 0
        second = int(rng.choice(len(pools), p=others / others.sum()))
        batches.append(np.concatenate([pools[first].pop(), pools[second].pop()]))
        counts[first] -= 1
        counts[second] -= 1
    return [batches[k] for k in rng.permutation(len(batches))]
