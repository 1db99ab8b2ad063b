"""Challenge-format reader against every quirk of SOURCES.md and the real samples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from heartbeatai.data.challenge_reader import parse_header, read_challenge
from heartbeatai.data.raw_record import RecordError
from quirky_records import LEADS, ecg_like, write_challenge
from real_samples import SAMPLES, sample


def test_real_georgia_header_with_mat_suffix_reads_in_microvolts():
    # E07938.hea's first line is `E07938.mat 12 500 5000 ...`, which wfdb.rdheader rejects
    record = read_challenge(sample("challenge2021/georgia/E07938.hea"))
    assert record.record_id == "E07938" and record.fs == 500
    assert record.signal.shape == (5000, 12)
    # first samples of lead I and II in the header's init values: -19 and -39 microvolts
    np.testing.assert_allclose(record.signal[0, :2], [-0.019, -0.039], atol=1e-6)
    assert record.label_codes == ["284470004"] and record.age == 65 and record.sex == "female"


def test_2020_cpsc_abbreviations_become_snomed_codes():
    record = read_challenge(sample("challenge2020/cpsc_2018/A0001.hea"))
    assert record.label_codes_raw == ["RBBB"]
    assert record.label_codes == ["59118001"]


@pytest.mark.parametrize("gain", ["4880/mV", "200/mV", "2000000/mV", "1000.0(0)/mv"])
def test_values_are_microvolts_whatever_the_header_gain_says(tmp_path, gain):
    signal = ecg_like(10, 500)
    header = write_challenge(tmp_path, "E00001", signal, gain=gain)
    record = read_challenge(header)
    np.testing.assert_allclose(record.signal, np.rint(signal * 1000) / 1000, atol=1e-6)
    assert record.gain_mismatch == (gain not in ("1000.0(0)/mv",))
    assert record.header_gain == pytest.approx(float(gain.split("/")[0].split("(")[0]))


def test_dx_with_space_repeats_and_empty_fields_gives_each_code_once(tmp_path):
    header = write_challenge(tmp_path, "A1", ecg_like(5, 500), dx="426783006,, 164889003,426783006", dx_key="# Dx:")
    record = read_challenge(header)
    assert record.label_codes == ["426783006", "164889003"]
    assert record.label_codes_raw == ["426783006", "164889003"]


def test_empty_dx_reads_as_no_labels(tmp_path):
    record = read_challenge(write_challenge(tmp_path, "A1", ecg_like(5, 500), dx=""))
    assert record.label_codes == [] and record.label_codes_raw == []


def test_codes_absent_from_every_mapping_are_kept(tmp_path):
    record = read_challenge(write_challenge(tmp_path, "A1", ecg_like(5, 500), dx="999999999,UNHEARD-OF"))
    assert record.label_codes == ["999999999", "UNHEARD-OF"]


def test_leads_are_reordered_to_standard_order_and_extra_leads_dropped(tmp_path):
    signal = ecg_like(5, 500)
    names = LEADS[::-1] + ["vx", "vy", "vz"]
    stored = np.concatenate([signal[:, ::-1], ecg_like(5, 500, seed=9)[:, :3]], axis=1)
    record = read_challenge(write_challenge(tmp_path, "S1", stored, lead_names=names))
    assert record.leads_original == 15
    np.testing.assert_allclose(record.signal, np.rint(signal * 1000) / 1000, atol=1e-6)


def test_lower_case_lead_names_are_recognised(tmp_path):
    names = [n.lower() for n in LEADS]
    record = read_challenge(write_challenge(tmp_path, "S1", ecg_like(5, 500), lead_names=names))
    assert record.signal.shape == (2500, 12)


def test_missing_standard_lead_is_an_error_naming_it(tmp_path):
    header = write_challenge(tmp_path, "X1", ecg_like(5, 500)[:, :11], lead_names=LEADS[:11])
    with pytest.raises(RecordError, match="missing standard leads V6"):
        read_challenge(header)


def test_truncated_data_file_is_reported_with_sample_counts(tmp_path):
    header = write_challenge(tmp_path, "X1", ecg_like(5, 500), header_length=5000)
    with pytest.raises(RecordError, match="truncated X1.mat: 2500 of 5000 samples"):
        read_challenge(header)


def test_missing_data_file_is_reported(tmp_path):
    header = write_challenge(tmp_path, "X1", ecg_like(5, 500))
    (tmp_path / "X1.mat").unlink()
    with pytest.raises(RecordError, match="missing data file X1.mat"):
        read_challenge(header)


def test_damaged_mat_is_reported_not_raised(tmp_path):
    header = write_challenge(tmp_path, "X1", ecg_like(5, 500))
    data = (tmp_path / "X1.mat").read_bytes()
    (tmp_path / "X1.mat").write_bytes(data[:40])
    with pytest.raises(RecordError, match="X1.mat"):
        read_challenge(header)


def test_mat_without_val_is_reported(tmp_path):
    header = write_challenge(tmp_path, "X1", ecg_like(5, 500))
    scipy.io.savemat(tmp_path / "X1.mat", {"other": np.zeros((12, 2500))})
    with pytest.raises(RecordError, match="no 'val'"):
        read_challenge(header)


@pytest.mark.parametrize("fs", ["0", "-500", "1e9", "nan"])
def test_absurd_sampling_rates_are_rejected(fs):
    text = f"X1 12 {fs} 5000\n" + "".join(f"X1.mat 16+24 1000/mV 16 0 0 0 0 {lead}\n" for lead in LEADS)
    with pytest.raises(RecordError, match="sampling rate"):
        parse_header(text)


def test_non_utf8_header_text_is_read(tmp_path):
    header = write_challenge(tmp_path, "E1", ecg_like(5, 500))
    header.write_bytes(header.read_bytes() + "#Note: Gro\xdfe Welle\n".encode("latin-1"))
    assert read_challenge(header).signal.shape == (2500, 12)


def test_own_header_parser_agrees_with_wfdb_wherever_wfdb_reads_the_header():
    import wfdb

    compared = 0
    for path in sorted(SAMPLES.glob("challenge202*/*/*.hea")):
        try:
            reference = wfdb.rdheader(str(path.with_suffix("")))
        except Exception:  # the `.mat`-suffix headers: the reason this parser exists
            continue
        ours = parse_header(path.read_text())
        assert (ours.n_sig, ours.fs, ours.sig_len) == (reference.n_sig, reference.fs, reference.sig_len)
        assert ours.lead_names == reference.sig_name
        assert ours.file_names == reference.file_name
        assert ours.gains_per_mv == pytest.approx(reference.adc_gain)
        assert ours.comments["dx"] == next(c.split(":", 1)[1].strip() for c in reference.comments if c.startswith("Dx"))
        compared += 1
    assert compared >= 10  # 12 in the in-repository subset, 216 in the shared set
