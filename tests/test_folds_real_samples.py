"""Folds and card on the real PhysioNet samples, prepared by `heartbeatai prepare`.

The samples hold the leaks a LODO study meets for real: PTB-XL's native 00001_lr and the
challenge's HR00001 are one recording, and the 2020 and 2021 CPSC releases share records.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from heartbeatai.cli import main
from heartbeatai.data.folds import fold_records, read_folds
from heartbeatai.data.prepared import PreparedDataset

SAMPLES = Path("/work/shared/data/ecg-samples")
SOURCES = ["challenge2021", "challenge2020", "cpsc2018_native", "ptbxl_native", "ptb_native"]

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("heartbeatai.data.prepare_cli") is None, reason="heartbeatai prepare not built yet"
    ),
    pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real samples not at {SAMPLES}"),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "prepared"
    status = main(["prepare", *[str(SAMPLES / s) for s in SOURCES], "--out", str(out), "--workers", "1"])
    assert status == 0
    return out


def assert_no_leakage(records: pd.DataFrame, folds: pd.DataFrame) -> None:
    keys = {
        "record": records["record_id"],
        "patient": records["domain"] + "/" + records["patient_id"].astype(str),
        "hash_exact": records["hash_exact"],
        "hash_coarse": records["hash_coarse"],
    }
    for fold_id, fold in folds.groupby("fold_id"):
        split = records["record_id"].map(fold[fold["split"] != "excluded"].set_index("record_id")["split"])
        for name, key in keys.items():
            sides = pd.DataFrame({"key": key, "split": split}).dropna().groupby("key")["split"].nunique()
            assert (sides <= 1).all(), f"{fold_id}: {name} {list(sides[sides > 1].index)[:3]} on two sides"


@pytest.mark.parametrize("protocol", ["lodo", "intra"])
def test_real_samples_never_leak_a_record_patient_or_signal_across_a_split(prepared, protocol):
    args = ["--k", "3"] if protocol == "intra" else []
    assert main(["data", "folds", str(prepared), "--protocol", protocol, *args]) == 0
    records = PreparedDataset(prepared).records
    folds, _ = read_folds(prepared, protocol)
    assert len(folds) > 0
    assert_no_leakage(records, folds)


def test_real_lodo_test_side_is_each_whole_domain_minus_reported_duplicates(prepared):
    assert main(["data", "folds", str(prepared), "--protocol", "lodo"]) == 0
    records = PreparedDataset(prepared).records
    folds, _ = read_folds(prepared, "lodo")
    for domain, part in records.groupby("domain"):
        splits = fold_records(folds, f"lodo:{domain}")
        assert sorted(splits["test"] + splits["excluded"]) == sorted(part["record_id"])


def test_real_ptbxl_native_and_challenge_copies_stay_on_one_side(prepared):
    assert main(["data", "folds", str(prepared), "--protocol", "intra", "--k", "3"]) == 0
    records = PreparedDataset(prepared).records
    copies = records[records["record_id"].isin(["HR00001", "00001_lr"])]["record_id"].tolist()
    if len(copies) < 2:
        pytest.skip(f"prepare gave record ids {copies} for the PTB-XL pair")
    folds, _ = read_folds(prepared, "intra")
    pair = folds[folds["record_id"].isin(copies)]
    assert (pair.groupby("fold_id")["split"].nunique() == 1).all()


def test_real_card_shows_every_domain_the_samples_hold(prepared, tmp_path, capsys):
    assert main(["data", "card", str(prepared), "--out", str(tmp_path)]) == 0
    card = pd.read_csv(tmp_path / "dataset_card.csv")
    assert {"cpsc", "georgia", "ptbxl", "chapman", "ningbo"} <= set(card["domain"])
    domains = pd.read_csv(tmp_path / "dataset_card_domains.csv", index_col="domain")
    assert (domains["n_records"] > 0).all() and domains["min_seconds"].min() >= 5.0
    assert "absent" in capsys.readouterr().out
