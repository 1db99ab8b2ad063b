"""Native readers (CPSC2018 .mat struct, PTB-XL and PTB WFDB) and domain resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from heartbeatai.data.cpsc_reader import load_reference, read_cpsc_native
from heartbeatai.data.domains import DomainError, parse_domain_map, resolve_domain
from heartbeatai.data.ptbxl_reader import load_ptbxl_database, read_native_wfdb, scp_to_snomed
from heartbeatai.data.raw_record import RecordError
from heartbeatai.labels import CPSC_REFERENCE_CODES
from quirky_records import ecg_like, write_cpsc_native, write_native_wfdb, write_reference
from real_samples import sample


def test_cpsc_native_struct_reads_mv_signal_demographics_and_reference_labels():
    reference = load_reference(sample("label_maps/cpsc2018/REFERENCE.csv"))
    record = read_cpsc_native(sample("cpsc2018_native/A1980.mat"), reference)
    assert record.signal.shape == (5000, 12) and record.fs == 500
    assert record.age == 52 and record.sex == "male"
    assert record.label_codes == [CPSC_REFERENCE_CODES[n] for n in reference["A1980"]]
    assert record.source_domain == "cpsc"


def test_cpsc_native_multi_label_reference_keeps_every_label(tmp_path):
    write_cpsc_native(tmp_path, "A7000", ecg_like(10, 500))
    reference = load_reference(write_reference(tmp_path, {"A7000": [2, 8, 7]}))
    record = read_cpsc_native(tmp_path / "A7000.mat", reference)
    assert record.label_codes_raw == ["2", "8", "7"]
    assert record.label_codes == ["164889003", "429622005", "164884008"]


def test_cpsc_native_without_reference_entry_is_skipped_with_reason(tmp_path):
    write_cpsc_native(tmp_path, "A7000", ecg_like(10, 500))
    with pytest.raises(RecordError, match="no labels"):
        read_cpsc_native(tmp_path / "A7000.mat", {})


def test_foreign_mat_without_header_is_reported(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "orphan.mat", {"val": np.zeros((12, 100))})
    with pytest.raises(RecordError, match="no .hea header"):
        read_cpsc_native(tmp_path / "orphan.mat", {})


def test_ptbxl_native_maps_scp_statements_through_the_curated_table():
    database = load_ptbxl_database(sample("ptbxl_native/ptbxl_database_excerpt.csv"))
    record = read_native_wfdb(sample("ptbxl_native/records100/00000/00001_lr.hea"), database)
    assert record.fs == 100 and record.signal.shape == (1000, 12)
    # {'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}: as the challenge's HR00001 (Dx 251146004,426783006)
    assert record.label_codes_raw == ["NORM", "LVOLT", "SR"]
    assert sorted(record.label_codes) == ["251146004", "426783006"]
    assert record.patient_id == "ptbxl:15709" and record.sex == "female" and record.age == 56
    np.testing.assert_allclose(record.signal[0, :3], [-0.119, -0.055, 0.064], atol=1e-6)


def test_every_scp_statement_of_ptbxl_is_in_the_curated_table_with_its_provenance():
    statements = pd.read_csv(sample("label_maps/ptb-xl/scp_statements.csv"), index_col=0).index
    table = pd.read_csv(
        Path(__file__).parents[1] / "platform/heartbeatai/package_data/ptbxl_scp_to_snomed.csv", dtype=str
    )
    assert set(table["scp_code"]) == set(statements)
    assert set(table["provenance"]) <= {"name-match", "curated", "no-equivalent"}
    assert table.loc[table["snomed_code"].isna(), "provenance"].eq("no-equivalent").all()
    assert scp_to_snomed()["CRBBB"] == "713427006"


def test_ptbxl_record_missing_from_the_database_is_skipped_with_reason(tmp_path):
    header = write_native_wfdb(tmp_path, "00042_lr", ecg_like(10, 100), 100)
    with pytest.raises(RecordError, match="no labels"):
        read_native_wfdb(header, {})


def test_ptb_keeps_the_twelve_standard_leads_of_fifteen():
    record = read_native_wfdb(sample("ptb_native/s0010_re.hea"), {})
    assert record.leads_original == 15 and record.signal.shape == (38400, 12)
    assert record.fs == 1000
    np.testing.assert_allclose(record.signal[0, 0], -489 / 2000, atol=1e-6)  # PTB's own 2000/mV
    assert record.label_codes == ["164865005"]  # "Reason for admission: Myocardial infarction"


@pytest.mark.parametrize(
    ("path", "record_id", "hint", "expected"),
    [
        ("data/challenge2021/cpsc_2018/g1/A0001.hea", "A0001", None, "cpsc"),
        ("data/training/cpsc_2018_extra/Q0001.hea", "Q0001", None, "cpsc_extra"),
        ("x/ptb-xl/HR00001.hea", "HR00001", None, "ptbxl"),
        ("x/chapman_shaoxing/g3/JS10646.hea", "JS10646", None, "chapman"),
        ("x/ningbo/JS10647.hea", "JS10647", None, "ningbo"),
        ("anywhere/JS10646.hea", "JS10646", None, "chapman"),
        ("anywhere/JS10647.hea", "JS10647", None, "ningbo"),
        ("anywhere/E00001.hea", "E00001", None, "georgia"),
        ("anywhere/I0001.hea", "I0001", None, "incart"),
        ("anywhere/s0010_re.hea", "s0010_re", None, "ptb"),
        ("ptbxl_native/records100/00000/00001_lr.hea", "00001_lr", "ptbxl", "ptbxl"),
        ("dl/WFDB_CPSC2018_2/Q0001.hea", "Q0001", None, "cpsc_extra"),
        ("dl/WFDB_StPetersburg/I01.hea", "I01", None, "incart"),
        ("dl/Training_E/WFDB/E00001.hea", "E00001", None, "georgia"),
        # the folder outranks the name: a Ningbo-numbered record filed under chapman
        ("x/chapman_shaoxing/JS20000.hea", "JS20000", None, "chapman"),
    ],
)
def test_domain_comes_from_folder_then_reader_then_name_prefix(path, record_id, hint, expected):
    assert resolve_domain(record_id, Path(path), hint, {}) == expected


def test_synthetic_folders_are_their_own_domains(tmp_path):
    (tmp_path / "synthetic_manifest.json").write_text("{}")
    (tmp_path / "alpha").mkdir()
    assert resolve_domain("A0001", tmp_path / "alpha" / "A0001.hea", None, {}) == "alpha"


def test_domain_map_wins_and_can_fold_ningbo_into_chapman():
    mapping = parse_domain_map("ningbo=chapman,X9=georgia")
    assert resolve_domain("JS20000", Path("x/ningbo/JS20000.hea"), None, mapping) == "chapman"
    assert resolve_domain("JS20000", Path("anywhere/JS20000.hea"), None, mapping) == "chapman"
    assert resolve_domain("X9", Path("anywhere/X9.hea"), None, mapping) == "georgia"


def test_domain_map_file_of_lines_and_json(tmp_path):
    (tmp_path / "map.txt").write_text("# folders\nmy_site = georgia\n")
    (tmp_path / "map.json").write_text('{"my_site": "cpsc"}')
    assert parse_domain_map(str(tmp_path / "map.txt")) == {"my_site": "georgia"}
    assert parse_domain_map(str(tmp_path / "map.json")) == {"my_site": "cpsc"}


@pytest.mark.parametrize("spec", ["georgia", "a=", "=b", "a=b c"])
def test_malformed_domain_map_is_one_clear_error(spec):
    with pytest.raises(DomainError, match="--domain-map"):
        parse_domain_map(spec)


def test_unresolvable_domain_says_to_use_the_map():
    with pytest.raises(DomainError, match="use --domain-map"):
        resolve_domain("mystery", Path("somewhere/mystery.hea"), None, {})


def test_native_signals_read_through_the_memory_map_agree_with_wfdb():
    import wfdb

    from heartbeatai.data.raw_record import standard_lead_order

    database = load_ptbxl_database(sample("ptbxl_native/ptbxl_database_excerpt.csv"))
    for path in [sample("ptbxl_native/records100/00000/00001_lr.hea"), sample("ptb_native/s0010_re.hea")]:
        ours = read_native_wfdb(path, database)
        reference = wfdb.rdrecord(str(path.with_suffix("")))
        expected = reference.p_signal[:, standard_lead_order(list(reference.sig_name))]
        np.testing.assert_allclose(ours.signal, expected, atol=1e-6)


def test_other_wfdb_formats_are_decoded_by_wfdb_over_the_checked_window(tmp_path):
    import wfdb

    from quirky_records import LEADS

    signal = ecg_like(5, 500)
    wfdb.wrsamp("r212", fs=500, units=["mV"] * 12, sig_name=LEADS, p_signal=signal, fmt=["212"] * 12,
                adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    record = read_native_wfdb(tmp_path / "r212.hea", {})
    np.testing.assert_allclose(record.signal, wfdb.rdrecord(str(tmp_path / "r212")).p_signal, atol=1e-6)
    data = (tmp_path / "r212.dat").read_bytes()
    (tmp_path / "r212.dat").write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordError, match="truncated r212.dat"):
        read_native_wfdb(tmp_path / "r212.hea", {})
