"""The dataset card: what each domain holds, the table reviewers ask a LODO paper for.

Per domain: records, patients, original sampling rates and recording lengths, and records
flagged by the plausibility check (kept, e.g. with flat leads); per domain
and class: positives and prevalence, with classes a domain lacks marked absent (a class
absent from the held-out domain has no LODO test figure). `dataset_card` gives the long
form the results store keeps as its ``dataset_card`` table (columns as the store declares
them); `domain_summary` adds what only people read (every rate, min and max length), and
`write_card` renders both as CSV and Markdown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

# The results store's dataset_card columns, less `study` (the store's writer adds it).
CARD_COLUMNS = ["domain", "class", "count", "prevalence", "n_records", "n_patients", "fs", "median_seconds"]


def domain_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Per domain: n_records, n_patients, fs (the most common original rate), fs_all,
    median/min/max_seconds of the original recordings. Index: domain, sorted.

    `records` is a prepared dataset's index (domain, record_id, patient_id, fs_original,
    length_original in samples at fs_original).
    """
    seconds = records["length_original"].astype(float) / records["fs_original"].astype(float)
    frame = records.assign(seconds=seconds, patient=records["patient_id"].fillna(records["record_id"]))
    by_domain = frame.groupby("domain", sort=True)
    flagged = {}
    if "quality" in records:  # datasets prepared before the plausibility check lack it
        flagged["n_flagged"] = (records["quality"] != "ok").groupby(records["domain"], sort=True).sum().astype("int64")
    return pd.DataFrame(
        {
            "n_records": by_domain.size(),
            "n_patients": by_domain["patient"].nunique(),
            # Ties go to the lower rate, so the choice is stable.
            "fs": by_domain["fs_original"].agg(lambda fs: int(round(fs.mode().min()))),
            # Some sources mix rates (PTB-XL ships 100 and 500 Hz): people see them all.
            "fs_all": by_domain["fs_original"].agg(lambda fs: ", ".join(f"{v:g}" for v in sorted(fs.unique()))),
            "median_seconds": by_domain["seconds"].median(),
            "min_seconds": by_domain["seconds"].min(),
            "max_seconds": by_domain["seconds"].max(),
            **flagged,
        }
    ).rename_axis("domain")


def quality_table(records: pd.DataFrame) -> pd.DataFrame:
    """Records per domain and quality flag (plausibility.py), flags other than ok only."""
    if "quality" not in records:
        return pd.DataFrame(columns=["domain", "quality", "records"])
    flagged = records[records["quality"] != "ok"]
    counts = flagged.groupby(["domain", "quality"], sort=True).size()
    return counts.rename("records").reset_index()


def dataset_card(records: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Long form: one row per (domain, class), absent classes included with count 0."""
    missing = [f"cls_{c}" for c in classes if f"cls_{c}" not in records]
    if missing:
        raise ValueError(f"records lack label column(s) {', '.join(missing)}")
    summary = domain_summary(records)
    counts = records[[f"cls_{c}" for c in classes]].fillna(False).astype(bool).groupby(records["domain"], sort=True).sum()
    counts.columns = list(classes)
    long = counts.rename_axis(index="domain", columns="class").stack().rename("count").reset_index()
    long = long.join(summary, on="domain")
    long["count"] = long["count"].astype("int64")
    long["prevalence"] = long["count"] / long["n_records"]
    return long[CARD_COLUMNS]


def _markdown_table(frame: pd.DataFrame) -> str:
    # pandas' to_markdown needs tabulate; a pipe table is all we want from it.
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def class_table(card: pd.DataFrame) -> pd.DataFrame:
    """Class x domain cells "count (prevalence%)", or "absent" where a domain has none."""
    cell = np.where(
        card["count"] > 0,
        card["count"].astype(str) + " (" + (100 * card["prevalence"]).map("{:.1f}%".format) + ")",
        "absent",
    )
    return (
        card.assign(cell=cell)
        .pivot(index="class", columns="domain", values="cell")
        .reindex(index=list(dict.fromkeys(card["class"])))
        .rename_axis(columns=None)
        .reset_index()
    )


def card_markdown(summary: pd.DataFrame, card: pd.DataFrame, title: str = "Dataset card",
                  quality: pd.DataFrame | None = None) -> str:
    domains = (
        summary.drop(columns="fs")
        .round(1)
        .rename(
            columns={
                "n_records": "records",
                "n_patients": "patients",
                "fs_all": "fs (Hz)",
                "median_seconds": "median s",
                "min_seconds": "min s",
                "max_seconds": "max s",
                "n_flagged": "flagged",
            }
        )
        .reset_index()
    )
    sections = [
        f"# {title}",
        "## Domains (original rates and lengths)\n\n" + _markdown_table(domains),
        "## Classes (positives and prevalence per domain)\n\n" + _markdown_table(class_table(card)),
    ]
    if quality is not None and len(quality):
        sections.append("## Quality flags (records kept, flagged in records.parquet)\n\n" + _markdown_table(quality))
    return "\n\n".join(sections) + "\n"


def write_card(
    records: pd.DataFrame, classes: Sequence[str], out_dir: str | os.PathLike, title: str = "Dataset card"
) -> tuple[str, list[Path]]:
    """Write dataset_card.csv (long form), dataset_card_domains.csv and dataset_card.md.

    Returns the Markdown text and the paths written.
    """
    summary, card = domain_summary(records), dataset_card(records, classes)
    text = card_markdown(summary, card, title, quality_table(records))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "dataset_card.csv", out / "dataset_card_domains.csv", out / "dataset_card.md"]
    card.to_csv(paths[0], index=False)
    summary.to_csv(paths[1])
    paths[2].write_text(text, encoding="utf-8")
    return text, paths
