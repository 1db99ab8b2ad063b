"""Windows, samplers and preprocessing: what the training loop is fed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import signal as sps

from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.training.batches import (
    CropSampler,
    FilteredRecords,
    SlidingWindowDataset,
    TwoDomainBatchSampler,
    max_aggregate,
    read_window,
    record_set,
    window_starts,
)
from heartbeatai.training.transforms import SignalTransform
from train_fixtures import CLASSES, FS, write_planted_dataset


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return PreparedDataset(write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=12, seconds=20.0))


def test_sliding_windows_cover_every_sample_and_end_flush():
    starts = window_starts(1000, 300, 150)
    assert starts[0] == 0 and starts[-1] == 700
    covered = np.zeros(1000, bool)
    for s in starts:
        covered[s : s + 300] = True
    assert covered.all()
    assert window_starts(200, 300, 150).tolist() == [0]  # short record: one padded window


def test_max_aggregation_takes_each_records_highest_window_score():
    window_record = np.array([0, 0, 1, 2, 2, 2])
    scores = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.3], [0.0, 0.1], [0.7, 0.0], [0.2, 0.4]])
    assert max_aggregate(window_record, scores, 3).tolist() == [[0.5, 0.9], [0.3, 0.3], [0.7, 0.4]]
    with pytest.raises(ValueError, match="no window"):
        max_aggregate(window_record, scores, 4)


def test_crop_sampler_shards_one_epoch_across_ranks_without_overlap():
    lengths = np.full(10, 500)
    ranks = [list(CropSampler(lengths, 300, seed=3, num_replicas=2, rank=r)) for r in range(2)]
    indices = [i for shard in ranks for i, _ in shard]
    assert sorted(indices) == list(range(10))
    assert all(0 <= s <= 200 for shard in ranks for _, s in shard)


def test_crop_sampler_is_a_function_of_seed_and_epoch():
    lengths = np.arange(100, 140)
    a, b = CropSampler(lengths, 50, seed=1), CropSampler(lengths, 50, seed=1)
    a.set_epoch(4)
    b.load_state_dict({"epoch": 4, "seed": 1})
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)
    with pytest.raises(ValueError, match="seed"):
        b.load_state_dict({"epoch": 4, "seed": 2})


def test_crops_of_short_records_start_at_zero():
    assert {s for _, s in CropSampler(np.array([50, 80, 99]), 100, seed=0)} == {0}


def _random_split(seed: int, n_domains: int, n_records: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return (1 + rng.multinomial(n_records - n_domains, rng.dirichlet(np.ones(n_domains)))).tolist()


# Records per training domain. "60/30/10" is the example (its 60% domain holds
# more half-batches than the others together, so it is also a dominant-domain case).
SPLITS = {
    "60/30/10": [600, 300, 100],
    "balanced-two": [500, 500],
    "random-two": _random_split(1, 2, 900),
    "random-three": _random_split(2, 3, 1300),
    "random-five": _random_split(3, 5, 2000),
    "five-uneven": [410, 260, 170, 97, 63],
    "dominant": [850, 100, 50],
    "tiny-domain": [500, 400, 3],
}


def _epoch(sizes, batch_size, *, num_replicas=1, seed=0, epoch=0):
    """Every rank's batches of one epoch, and the domain of each record."""
    domains = np.repeat(np.arange(len(sizes)), sizes)
    shards = []
    for rank in range(num_replicas):
        sampler = TwoDomainBatchSampler(domains, np.full(len(domains), 400), 300, batch_size, seed=seed,
                                        num_replicas=num_replicas, rank=rank)
        sampler.set_epoch(epoch)
        shards.append([[i for i, _ in batch] for batch in sampler])
        assert len(shards[-1]) == len(sampler)
    return shards, domains


def _share_gap_pp(drawn: list[int], domains: np.ndarray) -> float:
    """Largest |share of the epoch's samples - share of the records| over domains, in points."""
    n = len(np.unique(domains))
    drawn_share = np.bincount(domains[drawn], minlength=n) / len(drawn)
    return float(100 * np.abs(drawn_share - np.bincount(domains, minlength=n) / len(domains)).max())


@pytest.mark.parametrize("batch_size", [32, 8, 7])
@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_a_crossdomain_epoch_draws_every_record_exactly_once_as_plain_shuffling_does(sizes, batch_size):
    (batches,), domains = _epoch(sizes, batch_size)
    drawn = [i for batch in batches for i in batch]
    assert sorted(drawn) == list(range(len(domains)))
    assert _share_gap_pp(drawn, domains) == 0.0
    half = batch_size // 2  # an odd batch size pairs equal halves: batches of b - 1
    assert max(map(len, batches)) == 2 * half


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_crossdomain_ranks_get_equal_batch_counts_and_the_epoch_keeps_domain_shares(sizes, num_replicas):
    shards, domains = _epoch(sizes, 16, num_replicas=num_replicas)
    assert len({len(shard) for shard in shards}) == 1
    drawn = [i for shard in shards for batch in shard for i in batch]
    assert set(drawn) == set(range(len(domains)))
    # Padding repeats at most num_replicas - 1 batches of the epoch's head.
    assert len(drawn) - len(domains) <= (num_replicas - 1) * 16
    assert _share_gap_pp(drawn, domains) <= 2.0


@pytest.mark.parametrize("batch_size", [32, 7])
@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_crossdomain_batches_pair_two_domains_whenever_the_pools_allow(sizes, batch_size):
    (batches,), domains = _epoch(sizes, batch_size)
    half = batch_size // 2
    pools = [-(-n // half) for n in sizes]  # half-batches per domain
    total, largest = sum(pools), max(pools)
    # Cross-domain pairs possible: all but one half-batch, or every other domain's
    # half-batches against the dominant one.
    possible = min(total // 2, total - largest)
    mixed = [batch for batch in batches if len(set(domains[batch])) == 2]
    assert len(mixed) == possible
    assert all(len(set(domains[batch])) <= 2 for batch in batches)
    for batch in mixed:  # one domain per half, each half a dealt half-batch (the last one short)
        change = np.flatnonzero(np.diff(domains[batch]))
        assert len(change) == 1 and change[0] + 1 <= half and len(batch) - change[0] - 1 <= half


def test_crossdomain_pairs_are_drawn_at_random_not_a_fixed_matching():
    (batches,), domains = _epoch([400, 400, 400, 400], 16)
    pairs = {tuple(sorted(set(domains[batch].tolist()))) for batch in batches}
    assert pairs == {(a, b) for a in range(4) for b in range(a + 1, 4)}


def test_two_domain_batches_hold_two_domains_in_halves():
    domains = np.repeat([0, 1, 2], [30, 10, 20])
    sampler = TwoDomainBatchSampler(domains, np.full(60, 400), 300, 8, seed=0, num_replicas=2, rank=1)
    batches = list(sampler)
    # Half-batches of 4: 8 + 3 + 5 = 16, none beyond half of them: 8 pairs, 4 per rank.
    assert len(batches) == len(sampler) == 4
    for batch in batches:  # a half of one domain, then a half of another (2 of domain 0 when short)
        change = np.flatnonzero(np.diff(domains[[i for i, _ in batch]]))
        assert len(change) == 1 and change[0] + 1 <= 4 and len(batch) - change[0] - 1 <= 4


def test_crossdomain_batches_are_a_function_of_seed_and_epoch():
    sizes = SPLITS["random-five"]
    first = _epoch(sizes, 16, num_replicas=2, seed=4, epoch=3)[0]
    assert first == _epoch(sizes, 16, num_replicas=2, seed=4, epoch=3)[0]
    assert first != _epoch(sizes, 16, num_replicas=2, seed=4, epoch=4)[0]
    assert first != _epoch(sizes, 16, num_replicas=2, seed=5, epoch=3)[0]


def test_a_crossdomain_sampler_resumed_mid_run_draws_the_batches_of_an_uninterrupted_one():
    domains = np.repeat(np.arange(3), SPLITS["60/30/10"])
    lengths = np.random.default_rng(0).integers(200, 900, len(domains))

    def sampler():
        return TwoDomainBatchSampler(domains, lengths, 300, 16, seed=7, num_replicas=2, rank=1)

    uninterrupted, stopped = sampler(), sampler()
    expected = []
    for epoch in range(4):
        uninterrupted.set_epoch(epoch)
        expected.append(list(uninterrupted))
    stopped.set_epoch(1)
    list(stopped)
    resumed = sampler()
    resumed.load_state_dict({**stopped.state_dict(), "epoch": 2})  # what the loop checkpoints
    again = []
    for epoch in range(2, 4):
        resumed.set_epoch(epoch)
        again.append(list(resumed))
    assert again == expected[2:]
    with pytest.raises(ValueError, match="seed"):
        resumed.load_state_dict({"epoch": 2, "seed": 8})


def test_two_domain_batches_need_two_training_domains():
    with pytest.raises(ValueError, match="crossdomain"):
        TwoDomainBatchSampler(np.zeros(10, int), np.full(10, 400), 300, 4, seed=0)


def test_bandpass_keeps_the_band_and_removes_baseline_wander_and_mains():
    t = np.arange(10 * FS) / FS
    qrs_band = np.sin(2 * np.pi * 10 * t)
    x = np.tile(qrs_band + 2.0 * np.sin(2 * np.pi * 0.1 * t) + np.sin(2 * np.pi * 48 * t), (12, 1))
    transform = SignalTransform(FS, bandpass_low_hz=0.5, bandpass_high_hz=40.0, normalize="none")
    y = transform(x.astype(np.float32))
    middle = slice(2 * FS, 8 * FS)
    assert np.abs(y[0, middle] - qrs_band[middle]).max() < 0.1


def test_bandpass_edge_at_or_above_nyquist_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"preprocess\.bandpass_high_hz"):
        SignalTransform(100, bandpass_low_hz=0.5, bandpass_high_hz=50.0, normalize="none")


def test_per_lead_zscore_standardises_each_lead_and_leaves_flat_leads_at_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (12, 500)).astype(np.float32)
    x[5] = 0.0
    y = SignalTransform(FS, bandpass_low_hz=None, bandpass_high_hz=None, normalize="per_lead_zscore")(x)
    live = np.arange(12) != 5
    assert np.allclose(y[live].mean(axis=1), 0, atol=1e-5) and np.allclose(y[live].std(axis=1), 1, atol=1e-4)
    assert not y[5].any()


def test_read_window_filters_with_context_so_a_window_matches_the_filtered_record(planted):
    transform = SignalTransform(planted.fs, bandpass_low_hz=0.5, bandpass_high_hz=40.0, normalize="none")
    row = 1  # 20 s: the 6 s of context fit on both sides of the window
    n = int(planted.records["length"].iloc[row])
    whole = transform.filter(planted.window(row, 0, n))
    part = read_window(planted, row, 800, 300, transform)
    error = np.abs(part - whole[:, 800:1100]).max()
    assert error < 1e-2 * np.abs(whole).max()
    # Plain sosfiltfilt of the bare window rings at its edges: the context is what helps.
    bare = sps.sosfiltfilt(sps.butter(4, (0.5, 40.0), "bandpass", fs=FS, output="sos"), planted.window(row, 800, 300))
    assert np.abs(bare - whole[:, 800:1100]).max() > 5 * error


@pytest.mark.parametrize("row", [0, 1, 2])
def test_a_window_flush_with_the_records_end_is_filtered_on_the_record_not_on_zeros_past_it(planted, row):
    # Every record's last evaluation window ends at the record's end; reading the context past
    # it as zeros made a step the filter rang on (20-44 % of the signal's range here).
    transform = SignalTransform(planted.fs, bandpass_low_hz=0.5, bandpass_high_hz=40.0, normalize="none")
    n = int(planted.records["length"].iloc[row])
    whole = transform.filter(planted.window(row, 0, n))
    part = read_window(planted, row, n - 300, 300, transform)
    assert np.abs(part - whole[:, n - 300:]).max() < 1e-2 * np.abs(whole).max()


def test_kept_filtered_records_give_the_windows_filtering_each_read_gives(planted):
    transform = SignalTransform(planted.fs, bandpass_low_hz=0.5, bandpass_high_hz=40.0, normalize="per_lead_zscore")
    kept, none_fit = FilteredRecords(), FilteredRecords(max_bytes=0)
    for row in range(len(planted)):
        n = planted.length(row)
        for start in (0, max(0, n - 300) // 2, max(0, n - 300)):
            fresh = read_window(planted, row, start, 300, transform)
            assert np.array_equal(read_window(planted, row, start, 300, transform, kept), fresh)
            assert np.array_equal(read_window(planted, row, start, 300, transform, none_fit), fresh)
    # 10 s records fit a 3 s window and its 6 s of context on both sides: kept; 20 s ones never are
    short = [r for r in range(len(planted)) if planted.length(r) <= 300 + 2 * transform.margin]
    assert short and sorted(kept._kept) == short and not none_fit._kept
    assert not pickle.loads(pickle.dumps(kept))._kept  # a loader worker fills its own
    # a window is the caller's own array: writing to it leaves the kept record as it was
    raw = SignalTransform(planted.fs, bandpass_low_hz=0.5, bandpass_high_hz=40.0, normalize="none")
    n, kept_raw = planted.length(short[0]), FilteredRecords()
    read_window(planted, short[0], 0, n, raw, kept_raw)[:] = 0
    assert np.array_equal(read_window(planted, short[0], 0, n, raw, kept_raw), read_window(planted, short[0], 0, n, raw))


def test_sliding_window_items_carry_their_record_and_labels(planted):
    ids = planted.records["record_id"].tolist()[:5]
    records = record_set(planted, ids, CLASSES, demographics=True, domain_ids={"alpha": 0})
    transform = SignalTransform(planted.fs, bandpass_low_hz=None, bandpass_high_hz=None, normalize="none")
    windows = SlidingWindowDataset(planted, records, 300, 150, transform)
    assert sorted(set(windows.window_record.tolist())) == list(range(5))
    item = windows[len(windows) - 1]
    i = int(item["record"])
    assert item["x"].shape == (12, 300) and item["demographics"].shape == (3,)
    assert item["y"].tolist() == records.labels[i].tolist()
    assert np.array_equal(records.labels, planted.labels(CLASSES)[planted.index_of(ids)])
