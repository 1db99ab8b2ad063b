"""The prepared-dataset writer and reader: layout, windows, labels, resume, fingerprint."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from heartbeatai.data.prepared import NotPreparedError, PreparedDataset
from heartbeatai.data.prepared_writer import PreparedRecord, PreparedWriter
from heartbeatai.labels import scored_vocabulary

VOCAB = scored_vocabulary()


def make_record(record_id: str, n: int, *, domain: str = "cpsc", codes=("164889003",), seed: int = 0) -> PreparedRecord:
    rng = np.random.default_rng(seed)
    return PreparedRecord(
        record_id=record_id,
        domain=domain,
        source_path=f"/src/{record_id}.hea",
        patient_id=record_id,
        age=61.0,
        sex="female",
        fs_original=500.0,
        length_original=n,
        label_codes_raw=list(codes),
        label_codes=list(codes),
        hash_exact=f"e{seed}",
        hash_coarse=f"c{seed}",
        header_gain=1000.0,
        gain_mismatch=False,
        nan_filled=False,
        truncated=False,
        leads_original=12,
        signal=rng.normal(size=(n, 12)).astype(np.float16),
    )


def write(path, records, **kwargs):
    writer = PreparedWriter(path, fs=500, vocabulary=VOCAB, params={"max_seconds": 60}, **kwargs)
    for record in records:
        writer.add(record.source_path, record)
    writer.finish()
    writer.close()


def test_signal_is_a_zero_copy_view_of_the_shard_with_the_written_samples(tmp_path):
    records = [make_record(f"A{i}", 700 + i, seed=i) for i in range(3)]
    write(tmp_path, records)
    data = PreparedDataset(tmp_path)
    assert len(data.records) == 3 and list(data.records.index) == [0, 1, 2]
    row = int(data.index_of(["A1"])[0])
    signal = data.signal(row)
    assert signal.dtype == np.float16 and signal.shape == (701, 12)
    assert isinstance(signal.base, np.memmap) or isinstance(signal, np.memmap)
    np.testing.assert_array_equal(signal, records[1].signal)


def test_records_spill_into_new_shards_when_one_is_full(tmp_path):
    records = [make_record(f"A{i}", 500, seed=i) for i in range(4)]
    write(tmp_path, records, shard_bytes=1000 * 12 * 2)
    data = PreparedDataset(tmp_path)
    assert data.records["shard"].nunique() == 2
    for i, record in enumerate(records):
        np.testing.assert_array_equal(data.signal(int(data.index_of([f"A{i}"])[0])), record.signal)


def test_window_is_float32_lead_major_and_zero_padded_past_the_end(tmp_path):
    record = make_record("A0", 1000)
    write(tmp_path, [record])
    data = PreparedDataset(tmp_path)
    window = data.window(0, 900, 300)
    assert window.dtype == np.float32 and window.shape == (12, 300)
    np.testing.assert_array_equal(window[:, :100], record.signal[900:].T.astype(np.float32))
    assert not window[:, 100:].any()


def test_labels_follow_equivalent_codes_and_requested_order(tmp_path):
    # 59118001 is RBBB's equivalent of the canonical 713427006
    write(tmp_path, [make_record("A0", 600, codes=("59118001",)), make_record("A1", 600, codes=("164889003",), seed=1)])
    data = PreparedDataset(tmp_path)
    labels = data.labels(["AF", "RBBB"])
    assert labels.dtype == bool
    assert labels.tolist() == [[False, True], [True, False]]
    with pytest.raises(KeyError, match="not prepared"):
        data.labels(["STD"])


def test_demographics_encode_unknown_age_and_sex(tmp_path):
    known = make_record("A0", 600)
    unknown = make_record("A1", 600, seed=1)
    unknown.age, unknown.sex = None, None
    write(tmp_path, [known, unknown])
    demo = PreparedDataset(tmp_path).demographics()
    # age standardised about 60 years in 20-year units; unknown: 0 with the known flag off
    np.testing.assert_allclose(demo, [[(61 - 60) / 20, 0.0, 1.0], [0.0, 0.5, 0.0]], rtol=1e-6)


def test_fingerprint_is_stable_across_write_order_and_changes_with_content(tmp_path):
    records = [make_record(f"A{i}", 600, seed=i) for i in range(3)]
    write(tmp_path / "a", records)
    write(tmp_path / "b", records[::-1])
    changed = records[:2] + [make_record("A2", 600, seed=99)]
    write(tmp_path / "c", changed)
    a, b, c = (PreparedDataset(tmp_path / x).fingerprint for x in "abc")
    assert a == b != c


def test_resume_keeps_journaled_records_and_discards_unjournaled_samples(tmp_path):
    writer = PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={})
    first = make_record("A0", 600)
    stamp = {"header": [100, 1, "h"], "files": {"A0.mat": [200, 1, "s"]}, "labels": None}
    writer.add(first.source_path, first, stamp)
    writer.close()
    # a crash after the samples were written but before the journal line
    with open(tmp_path / "signals" / "shard-00000.f16", "ab") as handle:
        handle.write(b"\x00" * 12 * 2 * 50)
    resumed = PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={})
    assert resumed.is_done(first.source_path, stamp)
    assert not resumed.is_done(first.source_path, {**stamp, "header": [100, 2, "h"]})  # touched since
    assert not resumed.is_done("/src/never-seen.hea", stamp)
    second = make_record("A1", 400, seed=1)
    resumed.add(second.source_path, second)
    resumed.finish()
    data = PreparedDataset(tmp_path)
    np.testing.assert_array_equal(data.signal(int(data.index_of(["A1"])[0])), second.signal)


def test_resume_refuses_other_parameters(tmp_path):
    PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={}).close()
    with pytest.raises(ValueError, match="other parameters \\(fs\\)"):
        PreparedWriter(tmp_path, fs=250, vocabulary=VOCAB, params={})


def test_manifest_reports_counts_skips_and_duplicate_groups(tmp_path):
    a, b = make_record("A0", 600), make_record("Q0", 600, domain="cpsc_extra", seed=1)
    b.hash_coarse = a.hash_coarse
    writer = PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={})
    writer.add(a.source_path, a)
    writer.add(b.source_path, b)
    writer.skip("/src/bad.hea", "truncated .mat: 10 of 60000 samples")
    writer.finish()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"]["cpsc"]["classes"]["AF"] == 1
    assert manifest["found"] == 3 and manifest["prepared"] == 2
    assert manifest["skipped"] == [{"source": "/src/bad.hea", "reason": "truncated .mat: 10 of 60000 samples"}]
    assert manifest["duplicate_groups"] == [{"record_ids": ["A0", "Q0"], "domains": ["cpsc", "cpsc_extra"], "exact": False}]


def test_same_name_from_two_sources_stays_two_records(tmp_path):
    a, b = make_record("A0001", 600), make_record("A0001", 600, seed=1)
    b.source_path = "/other/A0001.hea"
    write(tmp_path, [a, b])
    data = PreparedDataset(tmp_path)
    assert sorted(data.records["record_id"]) == ["A0001", "A0001~2"]
    assert data.records["record_id"].is_unique
    assert data.manifest["renamed_ids"] == {"A0001~2": "/src/A0001.hea"}
    assert data.records["source_record_id"].tolist() == ["A0001", "A0001"]


def test_dataset_pickles_without_its_memory_maps(tmp_path):
    write(tmp_path, [make_record("A0", 600)])
    data = PreparedDataset(tmp_path)
    data.signal(0)
    clone = pickle.loads(pickle.dumps(data))
    assert clone._maps == {}
    np.testing.assert_array_equal(clone.signal(0), data.signal(0))


def test_opening_a_directory_that_is_not_prepared_says_so(tmp_path):
    with pytest.raises(NotPreparedError, match="not a prepared dataset"):
        PreparedDataset(tmp_path)


def test_two_writers_cannot_share_a_directory(tmp_path):
    first = PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={})
    with pytest.raises(ValueError, match="another prepare is writing"):
        PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={})
    first.close()
    PreparedWriter(tmp_path, fs=500, vocabulary=VOCAB, params={}).close()


def test_index_and_manifest_out_of_step_is_refused(tmp_path):
    write(tmp_path, [make_record("A0", 600), make_record("A1", 600, seed=1)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["prepared"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NotPreparedError, match="interrupted while finishing"):
        PreparedDataset(tmp_path)
