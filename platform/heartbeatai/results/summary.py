"""A study's summary: what a list of studies shows, in one small file per study.

``<storage>/<study>/results/study_summary.json`` holds a study's trial counts by status,
its folds, its state (running, finished, empty) and the tables with unreadable parts,
computed from the store's own tables by ``write_study_summary(study_dir)``. The study
writes it when its stages end; a reader that finds it missing (an older store), stale or
unreadable rebuilds it on first read and writes it back where it may (read-only stores keep
it in memory). So a root of thousands of studies lists them from one small file each,
instead of reading every study's trials and every part's footer, and the list shows a page
of them at a time, reading only that page's summaries (``StudySummaries.page``).

Stale means: the `trials` table's parts (names, sizes, modification times) are no longer
the ones the summary was computed from, as when a study in progress writes trials. One
listing of that folder per study tells it. The damaged-table list is as of the summary's
writing; the chosen study's own table health is always read live (``inventory``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from heartbeatai.results import schema
from heartbeatai.results.reader import ResultsStore

SUMMARY_FILE = "study_summary.json"
SUMMARY_VERSION = 1
_MAX_SUMMARY_BYTES = 1 << 16
# The columns of the studies list, in order (trial counts by status in between).
COLUMNS = ("study", "folds", *schema.TRIAL_STATUSES, "total", "state", "damaged tables")


class StudySummaries:
    """The studies list of one store: each study's summary, kept while its trials key holds."""

    def __init__(self, store: ResultsStore):
        self.store = store
        self._known: dict[str, dict[str, Any]] = {}

    def read(self, studies: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Each study's summary: read from its small file, rebuilt from the tables (and written
        back) when missing or stale."""
        return [summary_or_rebuild(self.store, study, self._known)
                for study in (self.store.studies() if studies is None else studies)]

    def page(self, number: int, size: int, contains: str = "") -> tuple[list[dict[str, Any]], int]:
        """The summaries of one page of the studies list, in name order, and the number of pages.

        `contains` keeps the studies whose name holds it (case-insensitive). Only the page's
        studies are read (one listing of the root names them all), so the list costs the same
        at 3,000 studies as at 30: users keep every study they ever ran under one root.
        """
        names = self.store.studies()
        if contains:
            names = [name for name in names if contains.lower() in name.lower()]
        pages = max(1, -(-len(names) // size))
        number = min(max(int(number or 0), 0), pages - 1)
        return self.read(names[number * size:(number + 1) * size]), pages


def trials_key(store: ResultsStore, study: str) -> str:
    """A short hash of the trials table's part listing: what a summary is stale against."""
    listing = list(store.parts(study, "trials"))
    return hashlib.blake2b(repr(listing).encode(), digest_size=8).hexdigest()


def compute_summary(store: ResultsStore, study: str) -> dict[str, Any]:
    """The summary of `study` from its tables (the key is taken first: a trial written while
    this runs makes the summary stale, never silently missed)."""
    key = trials_key(store, study)
    progress = store.progress(study)
    totals = {status: int(progress[status].sum()) for status in (*schema.TRIAL_STATUSES, "total")}
    active = sum(totals[status] for status in schema.ACTIVE_STATUSES)
    inventory = store.inventory(study)
    return {
        "summary_version": SUMMARY_VERSION,
        "study": study,
        "trials_key": key,
        "folds": int(progress["fold_id"].nunique()),
        "trials": totals,
        "state": "running" if active else ("finished" if totals["total"] else "empty"),
        "damaged_tables": sorted(inventory.loc[inventory.state == "corrupt", "table"]),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_study_summary(study_dir: str | os.PathLike) -> dict[str, Any]:
    """Compute the summary of the study at `study_dir` (``<storage>/<study>``, a path or a
    URL) from its tables and write it atomically; returns it. Call when a stage ends."""
    text = os.fspath(study_dir).rstrip("/")
    root, study = text.rsplit("/", 1) if "://" in text else os.path.split(os.path.abspath(text))
    store = ResultsStore(root)
    summary = compute_summary(store, schema.check_study_name(study))
    _write(store, study, summary)
    return summary


def read_summary(store: ResultsStore, study: str, key: str | None = None) -> dict[str, Any] | None:
    """The stored summary if it is present, readable and current (`key`: the trials key now,
    when the caller has it); else None."""
    key = key if key is not None else trials_key(store, study)
    text = store.read_results_file(study, SUMMARY_FILE)
    try:
        summary = json.loads(text) if text is not None and len(text) <= _MAX_SUMMARY_BYTES else None
    except ValueError:  # not JSON
        return None
    if not _valid(summary, study) or summary["trials_key"] != key:
        return None
    return summary


def summary_or_rebuild(store: ResultsStore, study: str, cache: dict[str, dict] | None = None) -> dict[str, Any]:
    """The current summary of `study`: from `cache` or its file while the trials key holds,
    else rebuilt from the tables (and written back where the store is writable)."""
    key = trials_key(store, study)
    known = (cache or {}).get(study)
    if known is not None and known["trials_key"] == key:
        return known
    summary = read_summary(store, study, key)
    if summary is None:
        summary = compute_summary(store, study)
        try:
            _write(store, study, summary)
        except OSError:  # a read-only store: serve it from memory
            pass
    if cache is not None:
        cache[study] = summary
    return summary


def row(summary: dict[str, Any]) -> dict[str, Any]:
    """One line of the studies list."""
    return {"study": summary["study"], "folds": summary["folds"], **summary["trials"], "state": summary["state"],
            "damaged tables": ", ".join(summary["damaged_tables"])}


def _valid(summary: Any, study: str) -> bool:
    if not isinstance(summary, dict) or summary.get("summary_version") != SUMMARY_VERSION:
        return False
    trials = summary.get("trials")
    return (summary.get("study") == study and isinstance(summary.get("trials_key"), str)
            and isinstance(summary.get("folds"), int) and isinstance(trials, dict)
            and all(isinstance(trials.get(s), int) for s in (*schema.TRIAL_STATUSES, "total"))
            and summary.get("state") in ("running", "finished", "empty")
            and isinstance(summary.get("damaged_tables"), list))


def _write(store: ResultsStore, study: str, summary: dict[str, Any]) -> None:
    store.write_results_file(study, SUMMARY_FILE, json.dumps(summary, indent=1))
