"""The dataset card: what each domain holds, the table reviewers ask a LODO paper for.

Per domain: records, patients, original sampling rates and recording lengths; per domain
and class: positives and prevalence, with classes a domain lacks marked absent (a class
absent from the held-out domain has no LODO test figure). The long form returned by
`dataset_card` is what the results store keeps as its ``dataset_card`` table; the
Markdown and CSV renderings are for people.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

CARD_COLUMNS = [
    "domain",
    "class",
    "count",
    "prevalence",
    "present",
    "n_records",
    "n_patients",
    "fs_hz",
    "length_median_s",
    "length_min_s",
    "length_max_s",
]


def _domain_summary(records: pd.DataFrame) -> pd.DataFrame:
    seconds = records["length_original"].astype(float) / records["fs_original"].astype(float)
    frame = records.assign(seconds=seconds, patient=records["patient_id"].fillna(records["record_id"]))
    by_domain = frame.groupby("domain", sort=True)
    return pd.DataFrame(
        {
            "n_records": by_domain.size(),
            "n_patients": by_domain["patient"].nunique(),
            # A few sources mix rates (PTB-XL ships 100 and 500 Hz): list them all.
            "fs_hz": by_domain["fs_original"].agg(lambda fs: ", ".join(f"{v:g}" for v in sorted(fs.unique()))),
            "length_median_s": by_domain["seconds"].median(),
            "length_min_s": by_domain["seconds"].min(),
            "length_max_s": by_domain["seconds"].max(),
        }
    )


def dataset_card(records: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Long-form card: one row per (domain, class), domain facts repeated on each row.

    `records` is a prepared dataset's index (domain, record_id, patient_id, fs_original,
    length_original (samples) and a boolean ``cls_<ABBR>`` column per class).
    """
    missing = [f"cls_{c}" for c in classes if f"cls_{c}" not in records]
    if missing:
        raise ValueError(f"records lack label column(s) {', '.join(missing)}")
    summary = _domain_summary(records)
    columns = [f"cls_{c}" for c in classes]
    counts = records[columns].fillna(False).astype(bool).groupby(records["domain"], sort=True).sum()
    counts.columns = list(classes)
    long = counts.rename_axis(index="domain", columns="class").stack().rename("count").reset_index()
    long = long.join(summary, on="domain")
    long["count"] = long["count"].astype(int)
    long["prevalence"] = long["count"] / long["n_records"]
    long["present"] = long["count"] > 0
    return long[CARD_COLUMNS]


def _markdown_table(frame: pd.DataFrame) -> str:
    # pandas' to_markdown needs tabulate; a pipe table is all we want from it.
    header = [str(c) for c in frame.columns]
    rows = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def card_tables(card: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-domain summary, class x domain "count (prevalence)" with "absent") for display."""
    domains = (
        card.drop_duplicates("domain")
        .set_index("domain")[["n_records", "n_patients", "fs_hz", "length_median_s", "length_min_s", "length_max_s"]]
        .rename(
            columns={
                "n_records": "records",
                "n_patients": "patients",
                "fs_hz": "fs (Hz)",
                "length_median_s": "median s",
                "length_min_s": "min s",
                "length_max_s": "max s",
            }
        )
        .round(1)
        .reset_index()
    )
    cell = np.where(
        card["present"],
        card["count"].astype(str) + " (" + (100 * card["prevalence"]).map("{:.1f}%".format) + ")",
        "absent",
    )
    classes = (
        card.assign(cell=cell)
        .pivot(index="class", columns="domain", values="cell")
        .reindex(index=list(dict.fromkeys(card["class"])))
        .rename_axis(columns=None)
        .reset_index()
    )
    return domains, classes


def card_markdown(card: pd.DataFrame, title: str = "Dataset card") -> str:
    domains, classes = card_tables(card)
    return "\n\n".join(
        [
            f"# {title}",
            "## Domains\n\n" + _markdown_table(domains),
            "## Classes (positives and prevalence per domain)\n\n" + _markdown_table(classes),
        ]
    ) + "\n"


def write_card(card: pd.DataFrame, out_dir: str | os.PathLike, title: str = "Dataset card") -> tuple[Path, Path]:
    """Write dataset_card.csv (long form) and dataset_card.md; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "dataset_card.csv", out / "dataset_card.md"
    card.to_csv(csv_path, index=False)
    md_path.write_text(card_markdown(card, title), encoding="utf-8")
    return csv_path, md_path
