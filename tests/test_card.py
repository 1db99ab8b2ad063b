"""The dataset card: per-domain counts, rates, lengths, and class prevalence with absences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heartbeatai.cli import main
from heartbeatai.data.card import card_markdown, class_table, dataset_card, domain_summary
from heartbeatai.data.prepared_writer import PreparedRecord, PreparedWriter
from heartbeatai.labels import scored_vocabulary
from heartbeatai.results.writer import ResultsWriter

CLASSES = ["AF", "RBBB", "PVC"]


def index(rows: list[tuple[str, str, str, float, int, set[str]]]) -> pd.DataFrame:
    """(record_id, domain, patient_id, fs_original, length_original, positive classes) rows."""
    frame = pd.DataFrame(
        [r[:5] for r in rows], columns=["record_id", "domain", "patient_id", "fs_original", "length_original"]
    )
    for abbr in CLASSES:
        frame[f"cls_{abbr}"] = [abbr in r[5] for r in rows]
    return frame


@pytest.fixture
def records() -> pd.DataFrame:
    return index(
        [
            ("A1", "cpsc", "A1", 500.0, 5000, {"AF"}),
            ("A2", "cpsc", "A2", 500.0, 30000, {"AF", "RBBB"}),
            ("A3", "cpsc", "A3", 500.0, 7500, set()),
            ("A4", "cpsc", "A4", 500.0, 10000, {"RBBB"}),
            ("H1", "ptbxl", "p7", 100.0, 1000, {"RBBB"}),
            ("H2", "ptbxl", "p7", 500.0, 5000, set()),
            ("H3", "ptbxl", "p8", 500.0, 5000, set()),
            ("I1", "incart", "I1", 257.0, 462600, {"PVC"}),
        ]
    )


def test_card_counts_and_prevalence_per_domain_and_class(records):
    card = dataset_card(records, CLASSES).set_index(["domain", "class"])
    assert card.loc[("cpsc", "AF"), "count"] == 2
    assert card.loc[("cpsc", "RBBB"), "prevalence"] == pytest.approx(0.5)
    assert card.loc[("ptbxl", "RBBB"), "prevalence"] == pytest.approx(1 / 3)
    assert card.loc[("incart", "PVC"), "prevalence"] == pytest.approx(1.0)
    assert len(card) == 3 * 3  # every domain x class, absent ones included


def test_card_marks_classes_absent_from_a_domain(records):
    card = dataset_card(records, CLASSES)
    assert card.set_index(["domain", "class"]).loc[("cpsc", "PVC"), "count"] == 0
    cells = class_table(card).set_index("class")
    assert cells.loc["PVC", "cpsc"] == "absent" and cells.loc["AF", "cpsc"] == "2 (50.0%)"
    assert "| PVC | absent | 1 (100.0%) | absent |" in card_markdown(domain_summary(records), card)


def test_card_lengths_are_seconds_at_each_records_original_rate(records):
    summary = domain_summary(records)
    assert summary.loc["cpsc", ["min_seconds", "median_seconds", "max_seconds"]].tolist() == [10.0, 17.5, 60.0]
    assert summary.loc["ptbxl", "max_seconds"] == 10.0  # 1000 samples at 100 Hz, 5000 at 500 Hz
    assert summary.loc["incart", "median_seconds"] == pytest.approx(1800.0)
    assert summary.loc["ptbxl", "fs_all"] == "100, 500" and summary.loc["ptbxl", "fs"] == 500
    assert summary.loc["incart", "fs"] == 257


def test_card_counts_patients_not_records(records):
    card = dataset_card(records, ["AF"]).set_index("domain")
    assert card.loc["ptbxl", "n_records"] == 3 and card.loc["ptbxl", "n_patients"] == 2
    assert card.loc["cpsc", "n_patients"] == 4


def test_card_fits_the_results_store_dataset_card_table(records, tmp_path):
    card = dataset_card(records, CLASSES)
    assert ResultsWriter(tmp_path / "demo").write("dataset_card", card) is not None


def test_card_rejects_classes_the_index_does_not_carry(records):
    with pytest.raises(ValueError, match="cls_LBBB"):
        dataset_card(records, ["AF", "LBBB"])


def test_cli_card_prints_and_writes_csv_and_markdown(tmp_path, capsys):
    vocab = scored_vocabulary()
    writer = PreparedWriter(tmp_path / "ds", fs=500, vocabulary=vocab, params={"max_seconds": 60})
    for i, (domain, codes) in enumerate([("cpsc", ["164889003"]), ("cpsc", []), ("georgia", ["713427006"])]):
        record = PreparedRecord(
            record_id=f"R{i}", domain=domain, source_path=f"/src/R{i}.hea", patient_id=f"R{i}", age=None, sex=None,
            fs_original=500.0, length_original=5000, label_codes_raw=codes, label_codes=codes,
            hash_exact=f"e{i}", hash_coarse=f"c{i}", header_gain=None, gain_mismatch=False, nan_filled=False,
            truncated=False, leads_original=12, signal=np.zeros((4, 12), np.float16),
        )
        writer.add(record.source_path, record)
    writer.finish()
    writer.close()

    assert main(["data", "card", str(tmp_path / "ds"), "--out", str(tmp_path / "card")]) == 0
    out = capsys.readouterr().out
    assert "| AF | 1 (50.0%) | absent |" in out and "| RBBB | absent | 1 (100.0%) |" in out
    written = pd.read_csv(tmp_path / "card" / "dataset_card.csv")
    assert len(written) == 2 * len(vocab.abbrs)
    assert pd.read_csv(tmp_path / "card" / "dataset_card_domains.csv")["n_records"].tolist() == [2, 1]
    assert (tmp_path / "card" / "dataset_card.md").read_text().startswith("# Dataset card")


def test_cli_card_refuses_a_directory_that_is_not_a_prepared_dataset(tmp_path, capsys):
    assert main(["data", "card", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a prepared dataset" in err and "\n" not in err
