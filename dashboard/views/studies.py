"""The Studies view: every study under the root, and the chosen one's progress and dataset card."""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go
from dash import html

from heartbeatai.dashboard import figures
from heartbeatai.dashboard.layout import STUDIES_PAGE_SIZE
from heartbeatai.dashboard.views.base import ViewBase, ViewInputError, per_store_state, table
from heartbeatai.results.summary import COLUMNS as SUMMARY_COLUMNS
from heartbeatai.results.summary import StudySummaries
from heartbeatai.results.summary import row as summary_row


class StudiesView(NamedTuple):
    status: list
    progress: go.Figure
    card: go.Figure
    card_table: Any


class StudiesPage(NamedTuple):
    rows: list[dict]
    page_count: int


class StudiesViews(ViewBase):
    @cached_property
    def summaries(self) -> StudySummaries:
        return StudySummaries(self.store)

    def studies_page(self, page: int | None, contains: str | None) -> StudiesPage:
        """One page of the list of studies, from their summaries alone (results/summary.py):
        the root is listed once and only the page's studies' small files are read, so the
        first view costs the same at 3,000 studies as at one (issue 20)."""
        if contains is not None and not isinstance(contains, str):
            raise ViewInputError("the studies filter is a text")
        summaries, pages = self.summaries.page(page if isinstance(page, int) else 0, STUDIES_PAGE_SIZE,
                                               (contains or "")[:128])
        rows = pd.DataFrame([summary_row(s) for s in summaries], columns=list(SUMMARY_COLUMNS))
        return StudiesPage(rows.to_dict("records"), pages)

    @per_store_state
    def studies(self, study: str) -> StudiesView:
        """The chosen study's progress, dataset card and table health: its tables are read
        only once it is chosen."""
        card = self.store.read(study, "dataset_card")
        per_domain = (card.groupby("domain", as_index=False)
                      .agg(records=("n_records", "first"), patients=("n_patients", "first"), fs=("fs", "first"),
                           median_seconds=("median_seconds", "first")) if not card.empty else card)
        tables = self.store.inventory(study)
        return StudiesView(
            status=self.alerts(study, ("trials", "dataset_card")),
            progress=figures.progress_figure(self.store.progress(study)),
            card=figures.dataset_card_figure(card),
            card_table=html.Div([
                table(per_domain, "card-domains") if not per_domain.empty else None,
                html.H6(f"Tables of {study}", className="mt-3"),
                table(tables, "study-tables"),
            ]),
        )
