"""Folds and card on the real PhysioNet samples, prepared by `heartbeatai prepare`.

The samples hold the leaks a LODO study meets for real: PTB-XL's native 00001_lr and the
challenge's HR00001 are one recording, and the 2020 and 2021 CPSC releases share records.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from heartbeatai.cli import main
from heartbeatai.data.folds import fold_records, read_folds
from heartbeatai.data.prepared import PreparedDataset
from real_samples import SAMPLES, sample

SOURCES = ["challenge2021", "challenge2020", "cpsc2018_native", "ptbxl_native", "ptb_native"]
LABELS = ["label_maps/cpsc2018/REFERENCE.csv", "ptbxl_native/ptbxl_database_excerpt.csv"]
# Real records published again under another source's name: (original, folder, new name).
REISSUED = [
    ("challenge2021/ptb-xl/HR03961", "georgia", "E99901"),
    ("challenge2021/cpsc_2018/A0689", "ningbo", "JS99001"),
]

def reissue(original: Path, folder: Path, name: str) -> None:
    """Copy a challenge record under a new name, as a second release would publish it."""
    folder.mkdir(parents=True, exist_ok=True)
    header = original.with_suffix(".hea").read_text().replace(original.name, name)
    (folder / f"{name}.hea").write_text(header)
    shutil.copyfile(original.with_suffix(".mat"), folder / f"{name}.mat")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samples")
    for original, folder, name in REISSUED:
        reissue(sample(f"{original}.hea").with_suffix(""), root / "reissued" / folder, name)
    out = root / "prepared"
    labels = [arg for path in LABELS for arg in ("--labels", str(sample(path)))]
    sources = [str(SAMPLES / s) for s in SOURCES] + [str(root / "reissued")]
    assert main(["prepare", *sources, *labels, "--out", str(out), "--workers", "1", "--quiet"]) == 0
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


def test_real_lodo_excludes_a_record_reissued_by_another_source_from_both_test_sides(prepared):
    assert main(["data", "folds", str(prepared), "--protocol", "lodo"]) == 0
    records = PreparedDataset(prepared).records.set_index("record_id")
    folds, _ = read_folds(prepared, "lodo")
    for original, _, name in REISSUED:
        first = Path(original).name
        assert records.at[name, "hash_exact"] == records.at[first, "hash_exact"]
        for record_id in (first, name):
            fold = fold_records(folds, f"lodo:{records.at[record_id, 'domain']}")
            assert record_id in fold["excluded"], record_id


def test_real_card_shows_every_domain_the_samples_hold(prepared, tmp_path, capsys):
    assert main(["data", "card", str(prepared), "--out", str(tmp_path)]) == 0
    card = pd.read_csv(tmp_path / "dataset_card.csv")
    assert {"cpsc", "georgia", "ptbxl", "chapman", "ningbo"} <= set(card["domain"])
    domains = pd.read_csv(tmp_path / "dataset_card_domains.csv", index_col="domain")
    assert (domains["n_records"] > 0).all() and domains["min_seconds"].min() >= 5.0
    assert "absent" in capsys.readouterr().out
