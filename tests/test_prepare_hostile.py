"""Hostile sources through prepare (issue 12): each case beside one valid record.

Every case must end in one clean line of reason, with the counts reconciled (prepared +
skipped = found), nothing opened outside the source tree, and never a hang: the FIFO
cases run under a per-test timeout. Peak memory of the bomb cases is measured in a child
process by test_prepare_memory.py.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from heartbeatai.cli import main
from heartbeatai.data.prepare import NothingPreparedError, PrepareSettings, prepare
from heartbeatai.data.prepared import MANIFEST_FILE, PreparedDataset
from heartbeatai.data.raw_record import MAX_RECORD_BYTES, MAX_RECORD_SECONDS
from hostile_files import (
    challenge_header,
    native_header,
    opened_files,
    write_compressed_bomb,
    write_sparse_val,
)
from quirky_records import LEADS, ecg_like, write_challenge, write_cpsc_native, write_native_wfdb

FAST = pytest.mark.timeout(60)


def _src(tmp_path: Path) -> Path:
    """SRC/georgia with one valid record, E00001."""
    src = tmp_path / "src"
    write_challenge(src / "georgia", "E00001", ecg_like(5, 500))
    return src


def _run(tmp_path: Path, src: Path, **kwargs):
    """prepare in process, recording every file opened; returns (summary, reasons by file
    name, paths opened)."""
    with opened_files() as opened:
        summary = prepare([src], tmp_path / "out", PrepareSettings(), workers=1, progress=False, **kwargs)
    manifest = PreparedDataset(tmp_path / "out").manifest
    reasons = {Path(entry["source"]).name: entry["reason"] for entry in manifest["skipped"]}
    assert summary.found == summary.prepared + summary.skipped == manifest["found"]
    for reason in reasons.values():
        assert reason and "\n" not in reason and len(reason) < 300 and not reason.startswith("unexpected")
    return summary, reasons, list(opened)


def _nothing_outside(opened: list[str], *trees: Path) -> None:
    allowed = [os.path.realpath(t) for t in trees]
    outside = [p for p in opened if p.startswith("/") and not any(
        os.path.realpath(p).startswith(a) for a in allowed) and not _library_file(p)]
    assert not outside, outside


def _library_file(path: str) -> bool:
    """Python's own imports and package data (label maps, scp table), not the data's."""
    return "/site-packages/" in path or "/lib/python" in path or "/platform/heartbeatai/" in path or \
        path.startswith(("/usr/", "/proc/", "/sys/", "/dev/null", "/etc/localtime"))


# --- FIFOs, devices, sockets -----------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["B1.hea", "A9999.mat"])
def test_a_fifo_as_header_or_headerless_mat_is_skipped_without_blocking(tmp_path, name):
    src = _src(tmp_path)
    os.mkfifo(src / "georgia" / name)
    summary, reasons, _ = _run(tmp_path, src)
    assert summary.prepared == 1 and summary.skipped == 1
    assert "is a FIFO, not a regular file" in reasons[name]


@pytest.mark.timeout(30)
def test_a_fifo_as_signal_file_is_skipped_without_blocking(tmp_path):
    src = _src(tmp_path)
    (src / "georgia" / "B2.hea").write_text(challenge_header("B2", 2500))
    os.mkfifo(src / "georgia" / "B2.mat")
    summary, reasons, _ = _run(tmp_path, src)
    assert summary.skipped == 1 and reasons["B2.hea"] == "data file B2.mat is a FIFO, not a regular file"


@pytest.mark.timeout(30)
def test_a_fifo_as_label_file_is_a_warning_not_a_hang(tmp_path, capsys):
    src = _src(tmp_path)
    write_cpsc_native(src / "cpsc", "A0001", ecg_like(5, 500))
    os.mkfifo(src / "cpsc" / "REFERENCE.csv")
    summary, reasons, _ = _run(tmp_path, src)
    assert summary.prepared == 1 and "no labels" in reasons["A0001.mat"]
    assert "is a FIFO, not a regular file" in capsys.readouterr().err
    assert main(["prepare", str(src), "--out", str(tmp_path / "o2"), "--labels", str(src / "cpsc" / "REFERENCE.csv"),
                 "--quiet", "--workers", "1"]) == 2
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_a_unix_socket_as_header_is_skipped(tmp_path):
    import socket

    src = _src(tmp_path)
    path = src / "georgia" / "B3.hea"
    if len(str(path)) > 100:
        pytest.skip("socket path too long for AF_UNIX")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        _, reasons, _ = _run(tmp_path, src)
    finally:
        server.close()
    assert reasons["B3.hea"] == "header B3.hea is a socket, not a regular file"


@FAST
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_header_linked_to_a_device_is_never_read(tmp_path, device):
    src = _src(tmp_path)
    os.symlink(device, src / "georgia" / "B1.hea")
    summary, reasons, opened = _run(tmp_path, src)
    assert summary.skipped == 1 and reasons["B1.hea"] == "header B1.hea resolves outside the source folder"
    assert device not in opened


@FAST
def test_a_signal_file_linked_to_dev_zero_is_never_read(tmp_path):
    src = _src(tmp_path)
    folder = src / "georgia"
    (folder / "B4.hea").write_text(challenge_header("B4", 2500))
    os.symlink("/dev/zero", folder / "B4.mat")
    (folder / "B5.hea").write_text(native_header("B5", 5000))
    os.symlink("/dev/zero", folder / "B5.dat")
    summary, reasons, opened = _run(tmp_path, src)
    assert reasons["B4.hea"] == "data file B4.mat resolves outside the source folder"
    assert reasons["B5.hea"] == "signal file B5.dat resolves outside the source folder"
    assert "/dev/zero" not in opened and summary.prepared == 1


# --- declared sizes: bombs and oversized claims ----------------------------------------

@FAST
def test_a_compressed_bomb_is_refused_from_its_declared_dimensions(tmp_path):
    src = _src(tmp_path)
    folder = src / "georgia"
    size = write_compressed_bomb(folder / "B6.mat", 12, 10_000_000)  # 240 MB of int16 zeros
    assert size < 1_000_000
    (folder / "B6.hea").write_text(challenge_header("B6", 2500))
    summary, reasons, _ = _run(tmp_path, src)
    assert summary.skipped == 1
    assert reasons["B6.hea"] == ("'val' in B6.mat declares 12 x 10000000 values of 2 bytes (240.0 MB), "
                                 f"beyond the {MAX_RECORD_BYTES / 1e6:.1f} MB limit")


@FAST
def test_a_header_claiming_more_than_an_hour_is_refused_before_its_data(tmp_path):
    src = _src(tmp_path)
    folder = src / "georgia"
    write_compressed_bomb(folder / "B7.mat", 12, 40_000_000)  # the 12 x 4e7
    (folder / "B7.hea").write_text(challenge_header("B7", 40_000_000))
    (folder / "B8.hea").write_text(native_header("B8", 40_000_000))
    os.symlink("/dev/zero", folder / "B8.dat")
    summary, reasons, _ = _run(tmp_path, src)
    limit = f"beyond the limit of {MAX_RECORD_SECONDS / 3600:g} h at its own rate"
    assert reasons["B7.hea"] == f"declares 40000000 samples (22.2 h at 500 Hz), {limit}"
    assert reasons["B8.hea"] == reasons["B7.hea"]
    assert summary.prepared == 1


@FAST
def test_an_uncompressed_val_beyond_the_limit_is_refused_by_its_size(tmp_path):
    src = _src(tmp_path)
    folder = src / "georgia"
    write_sparse_val(folder / "B9.mat", 12, 10_000_000)  # 240 MB on paper, sparse on disk
    (folder / "B9.hea").write_text(challenge_header("B9", 3_000_000, fs=1000))
    _, reasons, _ = _run(tmp_path, src)
    assert reasons["B9.hea"].startswith("B9.mat is 240000024 bytes, beyond the")


@FAST
def test_a_dat_shorter_or_longer_than_its_header_says_is_refused_with_its_size(tmp_path):
    src = _src(tmp_path)
    folder = src / "ptb"
    write_native_wfdb(folder, "s0001_re", ecg_like(10, 1000, seed=1), 1000)
    write_native_wfdb(folder, "s0002_re", ecg_like(10, 1000, seed=2), 1000)
    data = (folder / "s0001_re.dat").read_bytes()
    (folder / "s0001_re.dat").write_bytes(data[: len(data) // 2])
    (folder / "s0002_re.dat").write_bytes((folder / "s0002_re.dat").read_bytes() + bytes(10 << 20))
    summary, reasons, _ = _run(tmp_path, src)
    assert reasons["s0001_re.hea"] == "truncated s0001_re.dat: 5000 of 10000 samples"
    # a longer file than the header's format and length take is not the record it declares
    # (issue 20: a 212 header over a format-16 file read as noise); never read to the header
    assert reasons["s0002_re.hea"] == ("s0002_re.dat is 10725760 bytes, but format 16 for 12 signals x 10000 "
                                       "samples takes 240000: header and file disagree")
    assert summary.prepared == 1


@FAST
def test_long_records_below_the_limit_still_prepare_and_are_cut_to_max_seconds(tmp_path):
    src = _src(tmp_path)
    write_challenge(src / "st_petersburg_incart", "I0001", ecg_like(1800, 257), fs=257)  # INCART: 30 min
    summary, _, _ = _run(tmp_path, src)
    records = PreparedDataset(tmp_path / "out").records.set_index("record_id")
    assert summary.prepared == 2 and records.loc["I0001", "length_original"] == 1800 * 257
    assert records.loc["I0001", "truncated"] and records.loc["I0001", "length"] == 60 * 500


# --- paths that leave the source tree --------------------------------------------------

def _secret(tmp_path: Path) -> Path:
    outside = tmp_path / "OUTSIDE"
    outside.mkdir()
    val = np.rint(ecg_like(5, 500, seed=9) * 1000).astype(np.int16).T
    scipy.io.savemat(outside / "secret.mat", {"val": val}, format="4")
    return outside / "secret.mat"


@FAST
def test_header_paths_leaving_the_source_folder_are_not_read(tmp_path):
    secret = _secret(tmp_path)
    src = _src(tmp_path)
    folder = src / "georgia" / "g1"
    folder.mkdir(parents=True)
    (folder / "C1.hea").write_text(challenge_header("C1", 2500, data_file="../../../OUTSIDE/secret.mat"))
    (folder / "C2.hea").write_text(challenge_header("C2", 2500, data_file=str(secret)))
    (folder / "C3.hea").write_text(native_header("C3", 2500, data_file="../../../OUTSIDE/secret.dat"))
    (tmp_path / "OUTSIDE" / "secret.dat").write_bytes(bytes(2500 * 24))
    summary, reasons, opened = _run(tmp_path, src)
    assert reasons["C1.hea"] == "data file ../../../OUTSIDE/secret.mat resolves outside the source folder"
    assert reasons["C2.hea"].endswith("is an absolute path: a header names files beside it")
    assert reasons["C3.hea"] == "signal file ../../../OUTSIDE/secret.dat resolves outside the source folder"
    assert summary.prepared == 1
    _nothing_outside(opened, src, tmp_path / "out")


@FAST
def test_links_leading_out_of_the_source_folder_are_not_followed(tmp_path):
    secret = _secret(tmp_path)
    (secret.parent / "secret.hea").write_text(challenge_header("secret", 2500))
    src = _src(tmp_path)
    os.symlink(secret.parent / "secret.hea", src / "georgia" / "C4.hea")  # a header link
    (src / "georgia" / "C5.hea").write_text(challenge_header("C5", 2500))
    os.symlink(secret, src / "georgia" / "C5.mat")  # a data-file link
    os.symlink(secret.parent, src / "elsewhere")  # a folder link
    summary, reasons, opened = _run(tmp_path, src)
    assert reasons["C4.hea"].endswith("resolves outside the source folder")
    assert reasons["C5.hea"] == "data file C5.mat resolves outside the source folder"
    assert reasons["elsewhere"] == "folder link leads outside the source folder"
    assert summary.prepared == 1 and summary.found == 4
    _nothing_outside(opened, src, tmp_path / "out")


@FAST
def test_links_inside_the_source_folder_are_followed(tmp_path):
    src = _src(tmp_path)
    write_challenge(src / "store", "E00002", ecg_like(5, 500, seed=4))
    (src / "georgia" / "E00003.hea").write_text(challenge_header("E00003", 2500, data_file="../store/E00002.mat"))
    os.symlink(src / "store" / "E00002.mat", src / "georgia" / "E00004.mat")
    (src / "georgia" / "E00004.hea").write_text(challenge_header("E00004", 2500))
    summary, reasons, _ = _run(tmp_path, src, )
    assert summary.prepared == 4, reasons


# --- strict decoding of `val` ----------------------------------------------------------

def _with_val(folder: Path, name: str, val, fmt: str = "5") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format=fmt)
    (folder / f"{name}.hea").write_text(challenge_header(name, np.asarray(val).shape[-1]))


@FAST
def test_complex_boolean_object_text_and_out_of_range_vals_are_skipped_with_their_reason(tmp_path):
    src = _src(tmp_path)
    folder = src / "georgia"
    base = np.rint(ecg_like(5, 500) * 1000).T
    _with_val(folder, "D1", base + 1j * base)
    _with_val(folder, "D2", base > 0)
    _with_val(folder, "D3", np.array([[b"x", 1]] * 12, dtype=object))
    _with_val(folder, "D4", np.array([["abc"] * 2500] * 12))
    _with_val(folder, "D5", np.full(base.shape, 10**15, dtype=np.int64))
    _with_val(folder, "D6", np.full(base.shape, 1e300))
    summary, reasons, _ = _run(tmp_path, src)
    assert reasons["D1.hea"].startswith("'val' in D1.mat is complex")
    assert reasons["D2.hea"] == "'val' in D2.mat is boolean (logical), not microvolts"
    assert reasons["D3.hea"].startswith("'val' in D3.mat is a cell array")
    assert reasons["D4.hea"].startswith("'val' in D4.mat is a char array")
    assert "beyond +-60000 mV" in reasons["D5.hea"] and "1e+12 mV" in reasons["D5.hea"]
    assert "beyond +-60000 mV" in reasons["D6.hea"]
    assert summary.prepared == 1 and summary.skipped == 6


@FAST
def test_float_vals_are_microvolts_with_nans_set_to_zero_and_flagged(tmp_path):
    src = _src(tmp_path)
    signal = ecg_like(5, 500, seed=5)
    val = signal.T * 1000
    val[3, 100:200] = np.nan
    _with_val(src / "ningbo", "JS20001", val)
    _run(tmp_path, src)
    data = PreparedDataset(tmp_path / "out")
    row = int(np.flatnonzero(data.records["record_id"] == "JS20001")[0])
    assert bool(data.records.loc[row, "nan_filled"])
    np.testing.assert_allclose(data.signal(row)[:50, 0].astype(float), signal[:50, 0], atol=2e-3)


@FAST
def test_cpsc_native_struct_with_complex_data_is_skipped(tmp_path):
    src = _src(tmp_path)
    folder = src / "cpsc"
    write_cpsc_native(folder, "A0001", ecg_like(5, 500) * (1 + 1j))
    write_cpsc_native(folder, "A0002", ecg_like(5, 500, seed=1))
    (folder / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\nA0001,1,,\nA0002,2,,\n")
    summary, reasons, _ = _run(tmp_path, src)
    assert reasons["A0001.mat"].startswith("CPSC2018 'ECG.data' is not a real numeric matrix")
    assert summary.prepared == 2


# --- native label files, row by row ----------------------------------------------------

def _cpsc(tmp_path: Path, rows: list[str]) -> tuple[Path, list[str]]:
    src = tmp_path / "src"
    folder = src / "TrainingSet1"
    names = [f"A198{i}" for i in range(5)]
    for i, name in enumerate(names):
        write_cpsc_native(folder, name, ecg_like(5, 500, seed=i))
    (folder / "REFERENCE.csv").write_text("\n".join(["Recording,First_label,Second_label,Third_label", *rows]) + "\n")
    return src, names


@FAST
def test_a_bad_reference_row_skips_its_record_alone_with_the_line_number(tmp_path):
    src, _ = _cpsc(tmp_path, ["A1980,inf,,", "A1981,1,,", "A1982,12,,", "A1983,2,8,", "A1984,5,,"])
    summary, reasons, _ = _run(tmp_path, src)
    assert reasons["A1980.mat"] == "no labels: REFERENCE.csv line 2: First_label 'inf' is not a code 1-9"
    assert reasons["A1982.mat"] == "no labels: REFERENCE.csv line 4: First_label '12' is not a code 1-9"
    assert summary.prepared == 3 and summary.skipped == 2


@FAST
def test_duplicate_reference_rows_are_reported_never_resolved_to_the_last(tmp_path):
    src, _ = _cpsc(tmp_path, ["A1980,1,,", "A1981,1,,", "A1980,2,,", "A1981,1,,", "A1982,3,,", "A1983,4,,",
                              "A1984,5,,"])
    summary, reasons, _ = _run(tmp_path, src)
    assert reasons == {"A1980.mat": "no labels: conflicting label rows for A1980 (REFERENCE.csv line 2, "
                                    "REFERENCE.csv line 4)"}
    manifest = PreparedDataset(tmp_path / "out").manifest
    assert manifest["label_notes"] == ["REFERENCE.csv line 5: repeats REFERENCE.csv line 3 for A1981 "
                                       "(same labels, kept once)"]
    assert summary.prepared == 4


def _ptbxl(tmp_path: Path, overrides: dict[int, dict[str, str]]) -> Path:
    """Five native PTB-XL records 00001_lr-00005_lr and a database, row i (1-5) amended."""
    src = tmp_path / "src" / "ptbxl"
    for i in range(1, 6):
        write_native_wfdb(src / "records100" / "00000", f"{i:05d}_lr", ecg_like(10, 100, seed=i), 100)
    columns = ["ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_lr", "filename_hr"]
    with open(src / "ptbxl_database.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(1, 6):
            row = {"ecg_id": str(i), "patient_id": f"{1000 + i}.0", "age": "56.0", "sex": "1",
                   "scp_codes": "{'NORM': 100.0, 'SR': 0.0}", "strat_fold": "1",
                   "filename_lr": f"records100/00000/{i:05d}_lr", "filename_hr": f"records500/00000/{i:05d}_hr"}
            row.update(overrides.get(i, {}))
            writer.writerow([row[c] for c in columns])
    return src


@FAST
@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("scp_codes", "5", "scp_codes '5' is a int, not a dict of statement -> likelihood"),
        ("scp_codes", "'NORM'", "scp_codes \"'NORM'\" is a str, not a dict of statement -> likelihood"),
        ("scp_codes", "NORM", "scp_codes 'NORM' is not a dict literal"),
        ("scp_codes", "{None: 1, 3: 2}", "scp_codes key 'None' is not an SCP statement"),
        ("scp_codes", "{'NORM': 'x'}", "scp_codes likelihood 'x' of NORM is not a number 0-100"),
        ("scp_codes", "{'NORM': float('inf')}", "scp_codes \"{'NORM': float('inf')}\" is not a dict literal"),
        ("patient_id", "inf", "patient_id 'inf' is not a whole number 0-1e+09"),
        ("patient_id", "1e300", "patient_id '1e300' is not a whole number 0-1e+09"),
        ("patient_id", "nan", "patient_id 'nan' is not a whole number 0-1e+09"),
        ("sex", "inf", "sex 'inf' is not a whole number 0-1 (PTB-XL codes 0 male, 1 female)"),
        ("sex", "2", "sex '2' is not a whole number 0-1 (PTB-XL codes 0 male, 1 female)"),
        ("age", "inf", "age 'inf' is not 0-120 (or 300, over 89)"),
        ("age", "-5", "age '-5' is not 0-120 (or 300, over 89)"),
    ],
)
def test_a_bad_ptbxl_row_skips_its_record_alone_with_the_line_number(tmp_path, field, value, reason):
    src = _ptbxl(tmp_path, {3: {field: value}})
    summary, reasons, _ = _run(tmp_path, src)
    assert reasons == {"00003_lr.hea": f"no labels: ptbxl_database.csv line 4: {reason}"}
    assert summary.prepared == 4
    records = PreparedDataset(tmp_path / "out").records.set_index("record_id")
    assert records.loc["00001_lr", "patient_id"] == "ptbxl:1001"


@FAST
def test_ptbxl_empty_fields_mean_unknown_and_300_means_over_89(tmp_path):
    src = _ptbxl(tmp_path, {2: {"age": "", "sex": "", "patient_id": ""}, 4: {"age": "300.0"}})
    summary, reasons, _ = _run(tmp_path, src)
    records = PreparedDataset(tmp_path / "out").records.set_index("record_id")
    assert summary.prepared == 5 and not reasons
    assert records.loc["00002_lr", "patient_id"] == "00002_lr" and np.isnan(records.loc["00002_lr", "age"])
    assert records.loc["00004_lr", "age"] == 90


# --- the run as a whole ----------------------------------------------------------------

@FAST
def test_nothing_prepared_is_one_line_of_error_and_leaves_no_dataset(tmp_path, capsys):
    src = tmp_path / "src" / "georgia"
    src.mkdir(parents=True)
    os.symlink("/dev/zero", src / "B1.hea")
    (src / "B2.hea").write_text(challenge_header("B2", 2500, data_file="../../OUTSIDE.mat"))
    with pytest.raises(NothingPreparedError, match="no record could be prepared: all 2 found were skipped"):
        prepare([src], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert not (tmp_path / "out").exists()

    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("heartbeatai prepare: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


@FAST
def test_counts_reconcile_over_every_hostile_case_together(tmp_path):
    """All of the above in one source tree, with two workers: nothing crashes the run."""
    secret = _secret(tmp_path)
    src = _src(tmp_path)
    folder = src / "georgia"
    os.mkfifo(folder / "F1.hea")
    os.symlink("/dev/urandom", folder / "F2.hea")
    write_compressed_bomb(folder / "F3.mat", 12, 10_000_000)
    (folder / "F3.hea").write_text(challenge_header("F3", 10_000_000, fs=1000))
    (folder / "F4.hea").write_text(challenge_header("F4", 2500, data_file="../../OUTSIDE/secret.mat"))
    _with_val(folder, "F5", np.ones((12, 2500), dtype=bool))
    write_challenge(folder, "E00009", ecg_like(5, 500, seed=3))
    with opened_files() as opened:
        summary = prepare([src], tmp_path / "out", PrepareSettings(), workers=2, progress=False)
    assert summary.found == 7 == summary.prepared + summary.skipped and summary.prepared == 2
    assert str(secret) not in opened


@FAST
def test_a_cpsc_struct_whose_cell_declares_millions_of_elements_is_refused_before_scipy(tmp_path):
    import struct as binary

    src = _src(tmp_path)
    folder = src / "cpsc"
    folder.mkdir()
    cells = np.empty((3, 5), dtype=object)
    cells[:] = [[np.zeros(1)] * 5] * 3
    scipy.io.savemat(folder / "A0001.mat", {"ECG": {"data": cells}})
    data = (folder / "A0001.mat").read_bytes()
    dims = binary.pack("<ii", 3, 5)
    assert data.count(dims) == 1
    (folder / "A0001.mat").write_bytes(data.replace(dims, binary.pack("<ii", 3, 50_000_000)))
    (folder / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\nA0001,1,,\n")
    _, reasons, _ = _run(tmp_path, src)
    assert reasons["A0001.mat"] == "A0001.mat: 'data' declares 150000000 elements in 960 bytes"
