"""Duplicate detection: the same recording under two names, formats, rates or gains."""

from __future__ import annotations

import shutil

import numpy as np
import scipy.signal

from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.ptbxl_reader import load_ptbxl_database, read_native_wfdb
from quirky_records import ecg_like, write_challenge
from real_samples import sample


def _prepare(src, out):
    prepare([src], out, PrepareSettings(), workers=1, progress=False)
    return PreparedDataset(out)


def test_same_recording_in_two_domains_shares_hash_exact_and_is_reported(tmp_path):
    # the CPSC-Extra record identical to a CPSC2018 one (SOURCES.md)
    signal = ecg_like(10, 500)
    write_challenge(tmp_path / "src" / "cpsc_2018", "A0042", signal, dx="164889003")
    write_challenge(tmp_path / "src" / "cpsc_2018_extra", "Q0042", signal, dx="164889003")
    write_challenge(tmp_path / "src" / "cpsc_2018", "A0043", ecg_like(10, 500, seed=1))
    data = _prepare(tmp_path / "src", tmp_path / "out")
    records = data.records.set_index("record_id")
    assert records.loc["A0042", "hash_exact"] == records.loc["Q0042", "hash_exact"]
    assert records.loc["A0043", "hash_exact"] != records.loc["A0042", "hash_exact"]
    assert data.manifest["duplicate_groups"] == [
        {"record_ids": ["A0042", "Q0042"], "domains": ["cpsc", "cpsc_extra"], "exact": True}
    ]


def test_ptbxl_native_100hz_and_its_challenge_rerelease_share_hash_coarse(tmp_path):
    # HR00001 is 00001_lr's recording at 500 Hz with the 2020 release's wrong 200/mV gain.
    # It is rebuilt here (FFT resampling: another filter than prepare's polyphase one)
    # because the shared samples hold only the native copy.
    src = tmp_path / "src"
    header = sample("ptbxl_native/records100/00000/00001_lr.hea")
    excerpt = sample("ptbxl_native/ptbxl_database_excerpt.csv")
    shutil.copytree(header.parents[1], src / "ptbxl_native" / "records100")
    shutil.copy(excerpt, src / "ptbxl_native" / "ptbxl_database.csv")
    native = read_native_wfdb(header, load_ptbxl_database(excerpt)).signal.astype(np.float64)
    rerelease = scipy.signal.resample(native, 5000, axis=0)
    write_challenge(src / "ptb-xl", "HR00001", rerelease, gain="200/mV", dx="251146004,426783006")
    data = _prepare(src, tmp_path / "out")
    records = data.records.set_index("record_id")
    assert records.loc["HR00001", "hash_coarse"] == records.loc["00001_lr", "hash_coarse"]
    assert records.loc["HR00001", "hash_exact"] != records.loc["00001_lr", "hash_exact"]
    assert records.loc["HR00001", "gain_mismatch"]
    others = records.drop(index=["HR00001", "00001_lr"])
    assert not others["hash_coarse"].isin([records.loc["HR00001", "hash_coarse"]]).any()
    assert others["hash_coarse"].is_unique
    group = [g for g in data.manifest["duplicate_groups"] if "HR00001" in g["record_ids"]]
    assert group == [{"record_ids": ["00001_lr", "HR00001"], "domains": ["ptbxl"], "exact": False}]


def test_distinct_recordings_of_the_same_rhythm_are_not_duplicates(tmp_path):
    for i in range(12):
        write_challenge(tmp_path / "src" / "georgia", f"E{i:05d}", ecg_like(10, 500, seed=i, heart_rate=72))
    data = _prepare(tmp_path / "src", tmp_path / "out")
    assert data.records["hash_coarse"].is_unique
    assert data.manifest["duplicate_groups"] == []


def test_sketch_groups_rescaled_and_refiltered_copies_among_thousands(tmp_path):
    from heartbeatai.data.signal_hash import near_duplicate_groups, resample, sketch

    rng = np.random.default_rng(0)
    originals = [ecg_like(10, 250, seed=i, heart_rate=float(rng.uniform(50, 110))) for i in range(3000)]
    sketches = [sketch(s, 250) for s in originals]
    # copy of record 7 at a wrong gain; copy of record 11 re-released at 100 Hz
    sketches.append(sketch(originals[7] * 4.88, 250))
    sketches.append(sketch(resample(resample(originals[11], 250, 100), 100, 250), 250))
    sketches.append(sketch(ecg_like(1.5, 250), 250))  # too short to sketch: never grouped
    groups = sorted(sorted(g) for g in near_duplicate_groups(sketches))
    assert groups == [[7, 3000], [11, 3001]]
