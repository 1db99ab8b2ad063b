"""`heartbeatai prepare` over every real sample of the sample set (tests/real_samples.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heartbeatai.cli import main
from heartbeatai.data.prepared import PreparedDataset
from real_samples import SAMPLES, sample

SOURCES = ["challenge2021", "challenge2020", "cpsc2018_native", "ptbxl_native", "ptb_native"]
LABEL_FILES = ["label_maps/cpsc2018/REFERENCE.csv", "ptbxl_native/ptbxl_database_excerpt.csv"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "prepared"
    argv = ["prepare", *(str(SAMPLES / s) for s in SOURCES), "--out", str(out), "--workers", "2", "--quiet"]
    for label_file in LABEL_FILES:
        argv += ["--labels", str(sample(label_file))]
    assert main(argv) == 0
    return PreparedDataset(out)


def _count_records(*folders: str) -> int:
    count = 0
    for folder in folders:
        pattern = "*.mat" if folder == "cpsc2018_native" else "*.hea"  # CPSC2018's own files have no header
        count += sum(1 for _ in (SAMPLES / folder).rglob(pattern))
    return count


def test_every_sample_record_is_prepared_and_counts_reconcile(prepared):
    manifest = prepared.manifest
    assert manifest["found"] == _count_records(*SOURCES) == manifest["prepared"] + len(manifest["skipped"])
    assert manifest["skipped"] == []
    assert prepared.records["record_id"].is_unique


def test_card_domains_are_all_present(prepared):
    counts = prepared.manifest["counts"]
    assert {"cpsc", "georgia", "ptbxl", "chapman", "ningbo", "ptb"} <= set(counts)
    # each release's folder resolves to its domain (150 + 4 + 10 and 17 + 5 in the shared set)
    cpsc = _count_records("challenge2020/cpsc_2018", "challenge2021/cpsc_2018", "cpsc2018_native")
    assert counts["cpsc"]["records"] == cpsc
    assert counts["ptbxl"]["records"] == _count_records("challenge2021/ptb-xl", "ptbxl_native")


def test_labels_are_those_each_source_gives(prepared):
    def classes_of(record_id):
        row = prepared.index_of([record_id])[0]
        return {c for c, on in zip(prepared.classes, prepared.labels(prepared.classes)[row]) if on}

    assert classes_of("A0001") == {"RBBB"}  # 2020 release, `#Dx: RBBB`
    assert classes_of("00001_lr") == {"LQRSV", "NSR"}  # PTB-XL LVOLT + SR
    assert classes_of("A1980") == {"PAC"}  # native REFERENCE code 6
    row = prepared.records.set_index("record_id").loc["s0010_re"]
    assert list(row["label_codes"]) == ["164865005"]  # kept although unscored


def test_signals_are_stored_at_500_hz_in_mv(prepared):
    assert prepared.fs == 500
    records = prepared.records.set_index("record_id")
    assert records.loc["00001_lr", "length"] == 5000  # 10 s from 100 Hz
    assert records.loc["s0010_re", "length"] == 19200  # 38.4 s from 1000 Hz, 15 leads -> 12
    row = prepared.index_of(["E07938"])[0]
    np.testing.assert_allclose(prepared.signal(row)[0, :2].astype(float), [-0.019, -0.039], atol=1e-4)


def test_manifest_states_schema_fs_classes_and_preprocessing(prepared):
    manifest = json.loads((prepared.path / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["fs"] == 500
    assert manifest["classes"] == prepared.classes and len(prepared.classes) == 26
    assert manifest["preprocessing"]["max_seconds"] == 60
    assert len(prepared.fingerprint) == 32


def test_demographics_of_samples_are_known(prepared):
    demographics = prepared.demographics()
    assert demographics.shape == (len(prepared.records), 3)
    assert demographics[:, 2].mean() > 0.9


def test_dataset_card_of_the_samples_shows_every_source_domain(prepared, tmp_path, capsys):
    assert main(["data", "card", str(prepared.path), "--out", str(tmp_path / "card")]) == 0
    rows = {line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert {"cpsc", "georgia", "ptbxl", "chapman", "ningbo", "ptb"} <= rows


def test_no_sample_is_skipped_for_its_amplitude_and_only_flat_leads_are_flagged(prepared):
    records = prepared.records
    flagged = records[records["quality"] != "ok"]
    assert set(zip(flagged["record_id"], flagged["quality"])) <= {("JS11438", "flat_leads")}  # V1-V6 zero as released
    assert sum(prepared.manifest["quality"].values()) == len(records)
