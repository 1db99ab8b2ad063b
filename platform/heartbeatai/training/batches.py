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


def read_window(
    dataset: PreparedDataset, row: int, start: int, length: int, transform: SignalTransform
) -> np.ndarray:
    """float32 (12, length) preprocessed, filtered with context around it when available."""
    margin = transform.margin
    context_start = max(0, start - margin)
    lead_in = start - context_start
    x = dataset.window(row, context_start, lead_in + length + margin)
    x = transform.filter(x)[:, lead_in : lead_in + length]
    return transform.standardize(np.ascontiguousarray(x))


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

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, start = item
        x = read_window(self.dataset, int(self.records.rows[i]), start, self.crop_len, self.transform)
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
        per_record = [window_starts(int(n), window_len, stride) for n in records.lengths]
        self.window_record = np.repeat(np.arange(len(records)), [len(s) for s in per_record])
        self.window_start = np.concatenate(per_record) if per_record else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.window_record)

    def __getitem__(self, w: int) -> dict[str, torch.Tensor]:
        i = int(self.window_record[w])
        start = int(self.window_start[w])
        x = read_window(self.dataset, int(self.records.rows[i]), start, self.window_len, self.transform)
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
    """Batches drawn half from one training domain and half from another.

    Cross-domain MixStyle (Zhou et al., ICLR 2021) swaps feature statistics between
    samples of different domains; a batch from one domain would leave it nothing to
    mix. Each batch picks two domains with probability proportional to their size, so
    an epoch still visits domains as often as plain shuffling would.
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
        self.domain_ids, counts = np.unique(self.domains, return_counts=True)
        if len(self.domain_ids) < 2:
            raise ValueError("mixstyle.mix: crossdomain needs at least two training domains")
        if batch_size < 2:
            raise ValueError("optim.batch_size: crossdomain batches need at least 2 samples per worker")
        self.domain_weights = counts / counts.sum()
        self.per_rank = max(1, len(self.domains) // (batch_size * num_replicas))

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = epoch_generator(self.seed, self.epoch)
        starts = crop_offsets(rng, self.lengths, self.crop_len)
        pools = {d: _Pool(np.flatnonzero(self.domains == d), rng) for d in self.domain_ids}
        halves = (self.batch_size // 2, self.batch_size - self.batch_size // 2)
        batches = []
        for _ in range(self.per_rank * self.num_replicas):
            pair = rng.choice(self.domain_ids, size=2, replace=False, p=self.domain_weights)
            members = np.concatenate([pools[d].take(n) for d, n in zip(pair, halves)])
            batches.append([(int(i), int(starts[i])) for i in members])
        return iter(batches[self.rank :: self.num_replicas])


class _Pool:
    """A domain's records in shuffled order, reshuffled when used up."""

    def __init__(self, members: np.ndarray, rng: np.random.Generator) -> None:
        self.members = members
        self.rng = rng
        self.queue = rng.permutation(members)

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if len(self.queue) == 0:
                self.queue = self.rng.permutation(self.members)
            out.append(self.queue[:n])
            n -= len(out[-1])
            self.queue = self.queue[len(out[-1]) :]
        return np.concatenate(out)
