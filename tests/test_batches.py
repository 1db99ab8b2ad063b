"""Windows, samplers and preprocessing: what the training loop is fed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.training.batches import (
    CropSampler,
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


def test_two_domain_batches_hold_two_domains_in_halves():
    domains = np.repeat([0, 1, 2], [30, 10, 20])
    sampler = TwoDomainBatchSampler(domains, np.full(60, 400), 300, 8, seed=0, num_replicas=2, rank=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 60 // 16
    for batch in batches:
        first, second = domains[[i for i, _ in batch[:4]]], domains[[i for i, _ in batch[4:]]]
        assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]


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
