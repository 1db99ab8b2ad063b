"""Unit and plausibility checks per record and per lead (issue 20, item 4).

Before, only values beyond +-60 V were refused: CPSC2018 data stored in microvolts
(a 2,132 mV peak) was prepared as mV without a word. Now a record whose median lead
peak-to-peak is implausible for an ECG in mV is skipped with a one-line reason (or kept,
flagged, with --keep-implausible), a flat lead is flagged, and the flags are counted in
records.parquet's quality column, the manifest and the data card. The thresholds are
calibrated on the real samples: none of them is skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from heartbeatai.cli import main
from heartbeatai.data import plausibility
from heartbeatai.data.prepare import LabelTables, PrepareSettings, discover, prepare, read_record
from heartbeatai.data.prepared import PreparedDataset
from quirky_records import ecg_like, write_challenge, write_cpsc_native, write_reference
from real_samples import SAMPLES


def _cpsc(tmp_path, scale: float):
    """Two CPSC2018 native records: A0001 as released (mV), A0002 multiplied by `scale`."""
    folder = tmp_path / "TrainingSet1"
    write_cpsc_native(folder, "A0001", ecg_like(10, 500))
    write_cpsc_native(folder, "A0002", ecg_like(10, 500, seed=1) * scale)
    write_reference(folder, {"A0001": [1], "A0002": [2]})
    return folder


def _reasons(out):
    return {entry["source"].rsplit("/", 1)[-1]: entry["reason"] for entry in PreparedDataset(out).manifest["skipped"]}


def test_cpsc_data_stored_in_microvolts_is_skipped_with_a_one_line_reason(tmp_path):
    summary = prepare([_cpsc(tmp_path, 1000.0)], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert summary.prepared == 1
    reason = _reasons(tmp_path / "out")["A0002.mat"]
    assert reason.startswith("implausible amplitude for an ECG in mV: median lead peak-to-peak ")
    assert reason.endswith(" mV, above 20 mV (microvolts read as mV?)") and "\n" not in reason


def test_data_in_volts_is_skipped_as_implausibly_small(tmp_path):
    prepare([_cpsc(tmp_path, 1e-3)], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert _reasons(tmp_path / "out")["A0002.mat"].endswith(" mV, below 0.05 mV (volts read as mV?)")


def test_keep_implausible_keeps_the_record_flagged_and_the_card_counts_it(tmp_path, capsys):
    src = _cpsc(tmp_path, 1000.0)
    out = tmp_path / "out"
    assert main(["prepare", str(src), "--out", str(out), "--workers", "1", "--quiet", "--keep-implausible"]) == 0
    assert "flagged, kept (quality column of records.parquet): implausible_amplitude 1" in capsys.readouterr().err
    data = PreparedDataset(out)
    assert data.records.set_index("record_id")["quality"].to_dict() == {"A0001": "ok", "A0002": "implausible_amplitude"}
    assert data.manifest["quality"] == {"implausible_amplitude": 1, "ok": 1}
    assert main(["data", "card", str(out), "--out", str(tmp_path / "card")]) == 0
    card = (tmp_path / "card" / "dataset_card.md").read_text()
    assert "| cpsc | implausible_amplitude | 1 |" in card


def test_a_flat_lead_is_flagged_and_kept(tmp_path):
    signal = ecg_like(10, 500)
    signal[:, 8] = 0.0  # V3 not recorded
    write_challenge(tmp_path / "src" / "georgia", "E00001", signal)
    write_challenge(tmp_path / "src" / "georgia", "E00002", ecg_like(10, 500, seed=1))
    summary = prepare([tmp_path / "src"], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert summary.prepared == 2 and summary.quality == {"flat_leads": 1, "ok": 1}
    records = PreparedDataset(tmp_path / "out").records.set_index("record_id")
    assert records.loc["E00001", "quality"] == "flat_leads" and records.loc["E00002", "quality"] == "ok"


@pytest.mark.parametrize("flat_leads, quality", [(0, "ok"), (1, "flat_leads"), (6, "flat_leads"),
                                                 (7, "implausible_amplitude")])
def test_flat_leads_are_flagged_and_a_majority_of_them_is_implausible(flat_leads, quality):
    ranges = np.full(12, 1.2)
    ranges[:flat_leads] = 0.0
    assert plausibility.assess(ranges)[0] == quality


def test_the_quality_column_leaves_the_fingerprint_of_plausible_data_as_it_was(tmp_path):
    """The fingerprint ignores the verdict column, so a dataset prepared before it existed
    keeps its fingerprint (runs refuse a dataset whose fingerprint differs)."""
    folder = _cpsc(tmp_path, 1.0)
    prepare([folder], tmp_path / "a", PrepareSettings(), workers=1, progress=False)
    kept = prepare([folder], tmp_path / "b", PrepareSettings(keep_implausible=True), workers=1, progress=False)
    assert PreparedDataset(tmp_path / "a").fingerprint == kept.fingerprint  # nothing flagged: same content


def test_no_real_sample_is_skipped_and_only_a_release_with_flat_leads_is_flagged():
    """The calibration: every real record of every source lies within the thresholds with
    margin (median lead peak-to-peak 0.50-12.4 mV in the shared set against 0.05-20 mV;
    every lead that is not flat spans at least 0.20 mV against 0.01). Ningbo JS11438 ships
    zeros in V1-V6 and is flagged for it, as it should be."""
    labels = LabelTables()
    labels.load(SAMPLES / "label_maps" / "cpsc2018" / "REFERENCE.csv")
    labels.load(SAMPLES / "ptbxl_native" / "ptbxl_database_excerpt.csv")
    sources = [SAMPLES / s for s in ("challenge2021", "challenge2020", "cpsc2018_native", "ptbxl_native", "ptb_native")]
    candidates, found_labels = discover(sources)
    for path in found_labels:
        labels.load(path)
    medians, live_leads, flagged = [], [], {}
    for candidate in candidates:
        record = read_record(candidate, labels)
        ranges = plausibility.peak_to_peak(np.nan_to_num(record.signal))
        quality, _ = plausibility.assess(ranges)
        if quality != "ok":
            flagged[record.record_id] = quality
        medians.append(np.median(ranges))
        live_leads.extend(ranges[ranges > 0])
    assert len(medians) == len(candidates) >= 19  # the in-repository subset; 243 in the shared set
    assert set(flagged.items()) <= {("JS11438", "flat_leads")}
    low, high = plausibility.MEDIAN_PEAK_TO_PEAK_MV
    assert min(medians) > 5 * low and max(medians) < high / 1.5
    assert min(live_leads) > 10 * plausibility.FLAT_LEAD_MV
