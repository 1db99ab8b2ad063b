"""Every declared format is checked against the file (issue 20, items 2 and 3).

A WFDB signal file must be exactly as long as its header's storage format, signal count
and length make it; a level-4 .mat's variables must tile the file and a level-5 numeric
array's data element must hold exactly its declared values; a boolean (logical) matrix is
refused from the file's own flag in every reader. Before, a header declaring 212 over a
format-16 .dat was decoded as noise, a .mat whose class disagreed with its data likewise,
and a logical `ECG.data` became a 0/1 mV signal (scipy returns uint8 for a logical).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from heartbeatai.data.challenge_reader import read_challenge
from heartbeatai.data.cpsc_reader import read_cpsc_native
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.ptbxl_reader import read_native_wfdb
from heartbeatai.data.raw_record import RecordError
from hostile_files import challenge_header
from quirky_records import ecg_like, write_challenge, write_cpsc_native, write_native_wfdb, write_ptbxl_database

# Bytes of 12 signals x 1,000 samples in each WFDB storage format the readers accept,
# counted by hand from the WFDB specification (signal.5): 8-bit formats one byte a
# sample, 212 two samples in 3 bytes, 310 and 311 three samples in 4 bytes.
WFDB_BYTES = {"8": 12_000, "16": 24_000, "24": 36_000, "32": 48_000, "61": 24_000, "80": 12_000, "160": 24_000,
              "212": 18_000, "310": 16_000, "311": 16_000}


def _declare_format(header: Path, fmt: str) -> None:
    header.write_text(re.sub(r"(\.dat) 16 ", rf"\1 {fmt} ", header.read_text()))


def _record_in_format(folder: Path, fmt: str, extra_bytes: int = 0) -> Path:
    """A 12-lead record of 1,000 samples whose header declares `fmt` over a .dat of
    WFDB_BYTES[fmt] + extra_bytes bytes (zeros: a valid sample in every format)."""
    header = write_native_wfdb(folder, "r", ecg_like(2, 500), 500)
    _declare_format(header, fmt)
    (folder / "r.dat").write_bytes(bytes(WFDB_BYTES[fmt] + extra_bytes))
    return header


@pytest.mark.parametrize("fmt", sorted(WFDB_BYTES, key=int))
def test_a_signal_file_of_exactly_its_formats_size_is_read(tmp_path, fmt):
    record = read_native_wfdb(_record_in_format(tmp_path, fmt), {})
    assert record.signal.shape == (1000, 12)


@pytest.mark.parametrize("fmt", sorted(WFDB_BYTES, key=int))
def test_a_signal_file_longer_than_its_format_takes_is_refused(tmp_path, fmt):
    header = _record_in_format(tmp_path, fmt, extra_bytes=4)
    with pytest.raises(RecordError, match=rf"^r\.dat is {WFDB_BYTES[fmt] + 4} bytes, but format {fmt} for 12 "
                                          rf"signals x 1000 samples takes {WFDB_BYTES[fmt]}.*header and file disagree$"):
        read_native_wfdb(header, {})


@pytest.mark.parametrize("fmt", sorted(WFDB_BYTES, key=int))
def test_a_signal_file_shorter_than_its_format_takes_is_truncated(tmp_path, fmt):
    with pytest.raises(RecordError, match=r"^truncated r\.dat: \d+ of 1000 samples$"):
        read_native_wfdb(_record_in_format(tmp_path, fmt, extra_bytes=-4), {})


def test_a_ptbxl_header_declaring_212_over_a_format_16_dat_is_refused_in_one_line(tmp_path):
    src = tmp_path / "ptbxl"
    folder = src / "records100" / "00000"
    for i in (1, 2):
        write_native_wfdb(folder, f"0000{i}_lr", ecg_like(10, 100, seed=i), 100)
    write_ptbxl_database(src, [{"ecg_id": i, "patient_id": i, "age": 50, "sex": 0, "scp_codes": {"NORM": 100.0},
                                "filename_lr": f"records100/00000/0000{i}_lr"} for i in (1, 2)])
    _declare_format(folder / "00001_lr.hea", "212")  # the file holds 24,000 bytes; 212 would take 18,000
    summary = prepare([src], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert summary.prepared == 1
    [skipped] = PreparedDataset(tmp_path / "out").manifest["skipped"]
    assert skipped["reason"] == ("00001_lr.dat is 24000 bytes, but format 212 for 12 signals x 1000 samples takes "
                                 "18000; its size fits format 16 or 61 or 160: header and file disagree")


# --- MATLAB files: class and shape against the data ------------------------------------

# level-4 precision digit of each class (MOPT = 10 x P), and another class of other size
V4_PRECISION = {"double": 0, "single": 1, "int32": 2, "int16": 3, "uint16": 4, "uint8": 5}
V4_DECLARED_AS = {"double": "single", "single": "double", "int32": "int16", "int16": "int32", "uint16": "uint8",
                  "uint8": "uint16"}


def _v4_val(folder: Path, name: str, dtype: str, declared: str | None = None) -> Path:
    """A challenge record whose level-4 `val` is stored in `dtype` (and, with `declared`,
    whose header says another class): ECG-like microvolts, non-negative for unsigned types."""
    folder.mkdir(parents=True, exist_ok=True)
    val = np.rint(ecg_like(5, 500) * 100).T
    val = (np.abs(val) if dtype.startswith("u") else val).astype(dtype)
    path = folder / f"{name}.mat"
    scipy.io.savemat(path, {"val": val}, format="4")
    if declared is not None:
        data = bytearray(path.read_bytes())
        assert struct.unpack_from("<i", data, 0)[0] == 10 * V4_PRECISION[dtype]
        struct.pack_into("<i", data, 0, 10 * V4_PRECISION[declared])
        path.write_bytes(bytes(data))
    (folder / f"{name}.hea").write_text(challenge_header(name, 2500))
    return folder / f"{name}.hea"


@pytest.mark.parametrize("dtype", sorted(V4_PRECISION))
def test_a_level_4_val_of_every_class_is_read(tmp_path, dtype):
    assert read_challenge(_v4_val(tmp_path, "E00001", dtype)).signal.shape == (2500, 12)


@pytest.mark.parametrize("dtype", sorted(V4_PRECISION))
def test_a_level_4_val_whose_declared_class_disagrees_with_its_data_is_refused(tmp_path, dtype):
    header = _v4_val(tmp_path, "E00001", dtype, declared=V4_DECLARED_AS[dtype])
    with pytest.raises(RecordError, match="does not match the data|^truncated E00001.mat"):
        read_challenge(header)


V5_CLASSES = ["double", "single", "int32", "int16", "uint8"]


@pytest.mark.parametrize("dtype", V5_CLASSES)
def test_a_level_5_val_whose_shape_disagrees_with_its_data_is_refused(tmp_path, dtype):
    val = np.abs(np.rint(ecg_like(5, 500) * 100)).T.astype(dtype)
    scipy.io.savemat(tmp_path / "E00001.mat", {"val": val}, format="5")
    (tmp_path / "E00001.hea").write_text(challenge_header("E00001", 2400))
    assert read_challenge(tmp_path / "E00001.hea").signal.shape == (2400, 12)  # the header's window of it
    data = (tmp_path / "E00001.mat").read_bytes()
    (tmp_path / "E00001.mat").write_bytes(data.replace(struct.pack("<ii", 12, 2500), struct.pack("<ii", 12, 2400), 1))
    with pytest.raises(RecordError, match=rf"'val' declares {dtype} 12x2400 .* its data hold \d+: the declared "
                                          "class or shape does not match the data"):
        read_challenge(tmp_path / "E00001.hea")


def test_a_cpsc_struct_whose_data_shape_disagrees_with_its_data_is_refused(tmp_path):
    path = write_cpsc_native(tmp_path, "A0001", ecg_like(5, 500))
    data = path.read_bytes()
    path.write_bytes(data.replace(struct.pack("<ii", 12, 2500), struct.pack("<ii", 12, 2000), 1))
    with pytest.raises(RecordError, match="'data' declares double 12x2000 .* does not match the data"):
        read_cpsc_native(path, {"A0001": [1]})


# --- boolean data, from the file's own flag, in every reader ---------------------------

def test_a_boolean_cpsc_ecg_data_is_refused_not_read_as_a_0_1_mv_signal(tmp_path):
    src = tmp_path / "TrainingSet1"
    write_cpsc_native(src, "A0001", ecg_like(5, 500) > 0)  # scipy writes a bool array as MATLAB logical
    write_cpsc_native(src, "A0002", ecg_like(5, 500, seed=1))
    (src / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\nA0001,1,,\nA0002,1,,\n")
    summary = prepare([src], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert summary.prepared == 1
    [skipped] = PreparedDataset(tmp_path / "out").manifest["skipped"]
    assert skipped["reason"] == "CPSC2018 'ECG.data' is boolean (logical 12x2500), not a signal in mV"


def test_a_boolean_challenge_val_is_refused_from_its_flag(tmp_path):
    write_challenge(tmp_path, "E00001", ecg_like(5, 500))
    scipy.io.savemat(tmp_path / "E00001.mat", {"val": ecg_like(5, 500).T > 0}, format="5")
    with pytest.raises(RecordError, match=r"^'val' in E00001.mat is boolean \(logical\), not microvolts$"):
        read_challenge(tmp_path / "E00001.hea")
