"""The Studies view: every study under the root, and the chosen one's progress and dataset card."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go
from dash import html

from heartbeatai.dashboard import figures
from heartbeatai.dashboard.views.base import ViewBase, table, unfinished
from heartbeatai.results import schema


class StudiesView(NamedTuple):
    status: list
    studies_table: Any
    progress: go.Figure
    card: go.Figure
    card_table: Any


class StudiesViews(ViewBase):
    def studies(self, study: str | None) -> StudiesView:
        study = self.study(study)
        names = self.store.studies()
        key = ("studies", study, tuple((name, self.store.signature(name)) for name in names))
        return self._cached(key, lambda: self._studies(study, names))

    def _studies(self, study: str, names: list[str]) -> StudiesView:
        rows = []
        for name in names:
            progress = self.store.progress(name)
            totals = progress[[*schema.TRIAL_STATUSES, "total"]].sum()
            inventory = self.store.inventory(name)
            active = unfinished(progress)
            rows.append({"study": name, "folds": progress["fold_id"].nunique(),
                         **{status: int(totals[status]) for status in (*schema.TRIAL_STATUSES, "total")},
                         "state": "running" if active else ("finished" if totals["total"] else "empty"),
                         "damaged tables": ", ".join(inventory.loc[inventory.state == "corrupt", "table"])})
        card = self.store.read(study, "dataset_card")
        per_domain = (card.groupby("domain", as_index=False)
                      .agg(records=("n_records", "first"), patients=("n_patients", "first"), fs=("fs", "first"),
                           median_seconds=("median_seconds", "first")) if not card.empty else card)
        tables = self.store.inventory(study)
        return StudiesView(
            status=self.alerts(study, ("trials", "dataset_card")),
            studies_table=table(pd.DataFrame(rows), "studies-list"),
            progress=figures.progress_figure(self.store.progress(study)),
            card=figures.dataset_card_figure(card),
            card_table=html.Div([
                table(per_domain, "card-domains") if not per_domain.empty else None,
                html.H6(f"Tables of {study}", className="mt-3"),
                table(tables, "study-tables"),
            ]),
        )
