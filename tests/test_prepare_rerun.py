"""A rerun of prepare into the same folder gives what a fresh prepare of the sources gives
now (issue 20, item 1): a changed record is prepared again, a removed one leaves, and the
fingerprint follows. Before, the journal keyed a record by its path alone and a rerun kept
the stale signal and labels under the old fingerprint."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from heartbeatai.cli import main
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from quirky_records import ecg_like, two_ptbxl_records, write_challenge, write_ptbxl_database

LAYOUT = ["source_path", "shard", "offset"]  # where a record sits, not what it is


def _prepare(src, out, workers=1):
    return prepare([src], out, PrepareSettings(), workers=workers, progress=False)


def _georgia(tmp_path, n=3):
    src = tmp_path / "src" / "georgia"
    for i in range(n):
        write_challenge(src, f"E{i:05d}", ecg_like(5, 500, seed=i))
    return src


def assert_same_dataset(a, b):
    """Same records, same index content and the same samples per record, wherever stored."""
    a, b = PreparedDataset(a), PreparedDataset(b)
    assert a.fingerprint == b.fingerprint
    pd.testing.assert_frame_equal(a.records.drop(columns=LAYOUT), b.records.drop(columns=LAYOUT))
    for row in range(len(a.records)):
        np.testing.assert_array_equal(a.signal(row), b.signal(row))


def test_a_source_whose_signal_and_dx_changed_is_prepared_again_as_a_fresh_prepare_would(tmp_path):
    src = _georgia(tmp_path)
    first = _prepare(src, tmp_path / "out")
    write_challenge(src, "E00001", ecg_like(5, 500, seed=7), dx="164889003")  # a corrected release
    rerun = _prepare(src, tmp_path / "out")
    assert rerun.resumed == 2 and rerun.reprepared == {"header and signal file changed": 1}
    assert rerun.fingerprint != first.fingerprint
    fresh = _prepare(src, tmp_path / "fresh")
    assert rerun.fingerprint == fresh.fingerprint
    assert_same_dataset(tmp_path / "out", tmp_path / "fresh")
    labels = PreparedDataset(tmp_path / "out").records.set_index("record_id")["label_codes"]
    assert list(labels["E00001"]) == ["164889003"]


def test_a_source_removed_from_the_folder_leaves_the_dataset(tmp_path):
    src = _georgia(tmp_path)
    first = _prepare(src, tmp_path / "out")
    for suffix in (".hea", ".mat"):
        (src / f"E00002{suffix}").unlink()
    rerun = _prepare(src, tmp_path / "out")
    assert rerun.dropped == 1 and rerun.prepared == rerun.found == 2 and not rerun.reprepared
    assert rerun.fingerprint != first.fingerprint
    _prepare(src, tmp_path / "fresh")
    assert_same_dataset(tmp_path / "out", tmp_path / "fresh")
    assert "E00002" not in set(PreparedDataset(tmp_path / "out").records["record_id"])


def test_a_changed_row_of_the_ptbxl_database_is_prepared_again(tmp_path):
    src = tmp_path / "ptbxl"
    rows = two_ptbxl_records(src, patient_offset=100)
    write_ptbxl_database(src, rows)
    first = _prepare(src, tmp_path / "out")
    rows[0]["scp_codes"] = {"AFIB": 100.0}  # PTB-XL 1.0.1 -> 1.0.3 relabelled records so
    write_ptbxl_database(src, rows)
    rerun = _prepare(src, tmp_path / "out")
    assert rerun.resumed == 1 and rerun.reprepared == {"label row changed": 1}
    assert rerun.fingerprint != first.fingerprint
    _prepare(src, tmp_path / "fresh")
    assert_same_dataset(tmp_path / "out", tmp_path / "fresh")
    data = PreparedDataset(tmp_path / "out")
    assert data.labels(["AF"]).tolist() == [[True], [False]]


def test_a_source_now_unreadable_is_skipped_and_its_old_record_leaves(tmp_path):
    src = _georgia(tmp_path)
    _prepare(src, tmp_path / "out")
    data = (src / "E00000.mat").read_bytes()
    (src / "E00000.mat").write_bytes(data[: len(data) // 2])
    rerun = _prepare(src, tmp_path / "out")
    assert rerun.prepared == 2 and rerun.skipped == 1 and rerun.reprepared == {"signal file changed": 1}
    _prepare(src, tmp_path / "fresh")
    assert_same_dataset(tmp_path / "out", tmp_path / "fresh")


def test_an_untouched_rerun_redoes_nothing_and_a_touched_file_is_redone_to_the_same_dataset(tmp_path):
    src = _georgia(tmp_path)
    first = _prepare(src, tmp_path / "out")
    again = _prepare(src, tmp_path / "out", workers=2)
    assert again.resumed == 3 and not again.reprepared and again.fingerprint == first.fingerprint
    info = os.stat(src / "E00002.mat")
    os.utime(src / "E00002.mat", ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # e.g. copied without -p
    touched = _prepare(src, tmp_path / "out")
    assert touched.reprepared == {"signal file changed": 1} and touched.fingerprint == first.fingerprint


def test_the_command_line_says_what_was_prepared_again_and_why(tmp_path, capsys):
    src = _georgia(tmp_path)
    argv = ["prepare", str(src), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"]
    assert main(argv) == 0
    write_challenge(src, "E00000", ecg_like(5, 500, seed=9))
    for suffix in (".hea", ".mat"):
        (src / f"E00001{suffix}").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 unchanged from an earlier run; 1 prepared again (header and signal file changed: 1); " \
           "1 dropped (no longer under the sources)" in out
