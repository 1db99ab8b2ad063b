"""The Studies view: every study under the root, and the chosen one's progress and dataset card."""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go
from dash import html

from heartbeatai.dashboard import figures
from heartbeatai.dashboard.views.base import ViewBase, paged_table, table
from heartbeatai.results.summary import COLUMNS as SUMMARY_COLUMNS
from heartbeatai.results.summary import StudySummaries
from heartbeatai.results.summary import row as summary_row


class StudiesView(NamedTuple):
    status: list
    studies_table: Any
    progress: go.Figure
    card: go.Figure
    card_table: Any


class StudiesViews(ViewBase):
    @cached_property
    def summaries(self) -> StudySummaries:
        return StudySummaries(self.store)

    def studies(self, study: str | None) -> StudiesView:
        """The list of every study from the per-study summaries (results/summary.py): one
        small file each, so thousands of studies list in about a second; only the chosen
        study's own tables are read."""
        study = self.study(study)
        summaries = self.summaries.read()
        key = ("studies", study, self.store.signature(study),
               tuple(s["trials_key"] + s["written_at"] for s in summaries))
        return self._cached(key, lambda: self._studies(study, summaries))

    def _studies(self, study: str, summaries: list[dict]) -> StudiesView:
        rows = pd.DataFrame([summary_row(s) for s in summaries], columns=list(SUMMARY_COLUMNS))
        card = self.store.read(study, "dataset_card")
        per_domain = (card.groupby("domain", as_index=False)
                      .agg(records=("n_records", "first"), patients=("n_patients", "first"), fs=("fs", "first"),
                           median_seconds=("median_seconds", "first")) if not card.empty else card)
        tables = self.store.inventory(study)
        return StudiesView(
            status=self.alerts(study, ("trials", "dataset_card")),
            studies_table=paged_table(rows, "studies-list"),
            progress=figures.progress_figure(self.store.progress(study)),
            card=figures.dataset_card_figure(card),
            card_table=html.Div([
                table(per_domain, "card-domains") if not per_domain.empty else None,
                html.H6(f"Tables of {study}", className="mt-3"),
                table(tables, "study-tables"),
            ]),
        )
