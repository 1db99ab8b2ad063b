"""The synthetic benchmark's contract: determinism, files the challenge reader takes,
manifest, shift knobs, class frequencies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import wfdb

from heartbeatai.cli import main as cli_main
from heartbeatai.data.synthetic.domains import (
    CLASSES, SHIFT_KINDS, default_profiles, reference_profile, shifted, source_counts,
)
from heartbeatai.data.synthetic.labels import ATRIAL_RHYTHM, ATRIAL_RHYTHM_CODE, EXCLUSIVE, IMPLIES, RHYTHMS, WITH_P_WAVES, draw_labels
from heartbeatai.data.domains import SYNTHETIC_MANIFEST
from heartbeatai.data.synthetic import domain_profiles, generate, write_benchmark
from heartbeatai.labels import scored_vocabulary

REAL_PREFIXES = ("A", "Q", "E", "HR", "JS", "I", "S")


def test_same_seed_gives_same_signals_and_labels_whatever_the_workers():
    one = generate(8, fs=100, seconds=4, seed=3)
    again = generate(8, fs=100, seconds=4, seed=3, workers=2)
    other = generate(8, fs=100, seconds=4, seed=4)
    for a, b in zip(one.signals, again.signals):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.labels, again.labels)
    assert not np.allclose(one.signals[0][:100], other.signals[0][:100])


def test_a_larger_benchmark_extends_a_smaller_one_record_for_record():
    small = generate(4, fs=100, seconds=3, seed=1)
    large = generate(8, fs=100, seconds=3, seed=1)
    index = {name: i for i, name in enumerate(large.record_ids)}
    for i, name in enumerate(small.record_ids):
        np.testing.assert_array_equal(small.signals[i], large.signals[index[name]])


def test_written_records_are_challenge_format_with_lead_relations_within_rounding(tmp_path):
    out = write_benchmark(tmp_path / "synth", 8, fs=250, seconds=4, seed=0)
    manifest = json.loads((out / SYNTHETIC_MANIFEST).read_text())
    vocab_codes = set(scored_vocabulary().codes)
    names = [row["record"] for row in manifest["records"]]
    assert len(set(names)) == len(names) == 8
    assert not any(name.startswith(REAL_PREFIXES) for name in names)
    for row in manifest["records"]:
        stem = out / row["domain"] / row["record"]
        record = wfdb.rdrecord(str(stem))
        assert record.sig_name == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        assert record.fs == 250 and record.adc_gain == [1000.0] * 12
        comments = {k: v.strip() for k, v in (c.split(":", 1) for c in record.comments)}
        assert [c for c in comments["Dx"].split(",") if c] == row["header_label_codes"]  # may be empty, as in real data
        assert set(row["label_codes"]) <= vocab_codes | {ATRIAL_RHYTHM_CODE}  # + the unscored atrial rhythm
        val = scipy.io.loadmat(f"{stem}.mat")["val"].astype(int)  # (12, samples) microvolts
        lead = dict(zip(record.sig_name, val))
        # each written lead is rounded once: a relation of rounded values is off by <= 1-2 uV
        assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 2
        assert np.abs(lead["aVR"] + (lead["I"] + lead["II"]) / 2).max() <= 2
        assert np.abs(lead["aVL"] - (lead["I"] - lead["II"] / 2)).max() <= 2
        assert np.abs(lead["aVF"] - (lead["II"] - lead["I"] / 2)).max() <= 2
    assert set(manifest["domains"]) == {"cpsc", "ptbxl", "georgia", "chapman"}


def test_label_noise_changes_only_the_headers():
    # shift 0 leaves every domain at the mean noise rate; shift 4 on label noise alone
    # makes georgia's headers much noisier and must not touch a signal or a true label
    mean_rate = generate(200, fs=100, seconds=2, seed=2, shift=4.0, shift_kinds=())
    noisier = generate(200, fs=100, seconds=2, seed=2, shift=4.0, shift_kinds=("label_noise",))
    for a, b in zip(mean_rate.signals, noisier.signals):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mean_rate.labels, noisier.labels)
    georgia = noisier.domains == "georgia"  # 18.5 % per label at shift 4 against the mean 4.5 %
    flips = [(d.header_labels[georgia] != d.labels[georgia]).sum() for d in (noisier, mean_rate)]
    assert flips[0] > 2 * flips[1], flips


def test_shift_zero_makes_every_domain_the_same_distribution():
    profiles = domain_profiles(["cpsc", "ptbxl", "georgia", "chapman"], 0.0, None)
    params = [{k: v for k, v in p.as_dict().items() if k != "name"} for p in profiles.values()]
    assert all(p == params[0] for p in params)


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_a_shift_kind_alone_moves_only_its_own_parameters(kind):
    reference = reference_profile()
    moved = shifted(default_profiles()["georgia"], reference, 1.0, (kind,))
    differs = {k for k, v in moved.as_dict().items() if k != "name" and v != reference.as_dict()[k]}
    expected = {"style": {"prevalence", "label_noise"}, "prevalence": None, "label_noise": None}[kind]
    if kind == "style":
        assert differs and not differs & expected
    else:
        assert differs == {kind}


@pytest.mark.parametrize("domain", ["cpsc", "ptbxl", "georgia", "chapman", "ningbo"])
def test_class_frequencies_match_the_requested_prevalences_without_contradictions(domain):
    prevalence = default_profiles(include_st=True)[domain].prevalence
    rng = np.random.default_rng(0)
    n = 20000
    draws = [draw_labels(prevalence, rng) for _ in range(n)]
    for abbr, p in prevalence.items():
        observed = sum(abbr in d for d in draws) / n
        assert abs(observed - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9, (abbr, observed, p)
    rhythms = {*RHYTHMS, ATRIAL_RHYTHM}
    for d in draws:
        assert len(d & rhythms) == 1, d  # one base rhythm
        assert not any({a, b} <= d for a, b in EXCLUSIVE), d
        assert all(b in d for a, b in IMPLIES if a in d), d
        if "PR" in d:
            assert d == {"PR"}  # pacing hides everything else
        if d & {"IAVB", "LPR", "PAC"}:
            assert d & set(WITH_P_WAVES)  # they need a P wave


def test_every_scored_class_is_generated_somewhere():
    prevalence = {d: p.prevalence for d, p in default_profiles().items()}
    vocabulary = scored_vocabulary().abbrs
    assert set(CLASSES) == set(vocabulary)
    for abbr in vocabulary:
        assert max(p[abbr] for p in prevalence.values()) > 0, abbr
    # PRWP exists only in ningbo's counts: generated there, absent from the paper's four
    assert [d for d, p in prevalence.items() if p["PRWP"] > 0] == ["ningbo"]


def test_prevalences_are_the_sources_own_rare_classes_rare_and_nsr_included():
    prevalence = {d: p.prevalence for d, p in default_profiles().items()}
    nsr = {d: round(p["NSR"], 2) for d, p in prevalence.items()}
    assert nsr == {"cpsc": 0.13, "ptbxl": 0.83, "georgia": 0.17, "chapman": 0.18, "ningbo": 0.18}
    assert prevalence["cpsc"]["PVC"] == 0.0 and prevalence["cpsc"]["LAD"] == 0.0
    assert 0 < prevalence["ptbxl"]["LQT"] < 0.01 and 0 < prevalence["chapman"]["LQT"] < 0.01
    assert prevalence["georgia"]["LQT"] > 0.1  # the real imbalance the study must face
    assert 0 < prevalence["georgia"]["Brady"] < 0.001 and prevalence["ptbxl"]["Brady"] == 0
    assert prevalence["cpsc"]["RBBB"] > 0.25  # CPSC is RBBB-heavy


def test_the_shipped_source_counts_are_the_challenges_mapping_files_summed_over_equivalents():
    import csv
    from importlib import resources

    columns = {"cpsc": "CPSC", "ptbxl": "PTB_XL", "georgia": "Georgia", "chapman": "Chapman_Shaoxing",
               "ningbo": "Ningbo"}
    mapping = {}
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        path = resources.files("heartbeatai") / "package_data" / "evaluation-2021" / name
        with path.open(newline="", encoding="utf-8") as handle:
            mapping.update({row["SNOMEDCTCode"]: row for row in csv.DictReader(handle)})
    counts = source_counts()
    vocab = scored_vocabulary(include_st=True)
    for info in vocab.classes:
        for domain, column in columns.items():
            expected = sum(int(mapping[code][column]) for code in info.codes if code in mapping)
            assert counts[domain][info.abbr] == expected, (info.abbr, domain)
    assert {d: counts[d]["records"] for d in columns} == {
        "cpsc": 6877, "ptbxl": 21837, "georgia": 10344, "chapman": 10247, "ningbo": 34905}


def test_synth_command_writes_the_benchmark_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(["synth", "--out", str(out), "--records", "4", "--fs", "100", "--seconds", "3",
                     "--domains", "cpsc,chapman", "--workers", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["chapman", "cpsc", SYNTHETIC_MANIFEST]
    assert len(list((out / "cpsc").glob("*.hea"))) == 2
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--records", "4", "--domains", "mayo"]) == 2
    assert "unknown synthetic domains" in capsys.readouterr().err
    assert cli_main(["synth", "--out", str(tmp_path / "y"), "--records", "4", "--shift-kinds", "gain"]) == 2
    assert cli_main(["synth", "--out", str(out), "--records", "4"]) == 2  # never overwrites


def test_prepare_ingests_the_benchmark_with_folder_domains_and_header_labels(tmp_path):
    pytest.importorskip("heartbeatai.data.prepare")
    import pandas as pd

    from heartbeatai.data.prepare import PrepareSettings, prepare

    raw = write_benchmark(tmp_path / "raw", 8, fs=250, seconds=4, seed=0)
    prepare([raw], tmp_path / "prepared", PrepareSettings(fs=250, max_seconds=10), progress=False)
    index = pd.read_parquet(tmp_path / "prepared" / "records.parquet")
    manifest = {r["record"]: r for r in json.loads((raw / SYNTHETIC_MANIFEST).read_text())["records"]}
    assert sorted(index["record_id"]) == sorted(manifest)
    for row in index.itertuples():
        assert row.domain == manifest[row.record_id]["domain"]
        assert sorted(row.label_codes) == sorted(manifest[row.record_id]["header_label_codes"])


def test_electrodes_formed_into_leads_reproduce_dowers_vcg_to_ecg_transform():
    from heartbeatai.data.synthetic.dipole import DOWER, electrode_projection, form_leads

    dipole = np.random.default_rng(0).normal(size=(50, 3))
    leads = form_leads(dipole @ electrode_projection(np.zeros(3), 1.0))
    standard = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1-V6: the rows Dower publishes
    np.testing.assert_allclose(leads[:, standard], dipole @ DOWER.T, atol=1e-12)
