"""What every view shares: the store, the study check, the page's alerts, the cache.

``ViewBase`` holds the results store and a cache of built views keyed by the study's
tables' signature, checks the study a request names, and says on the page how far the
tables behind a view can be trusted: a study in progress, a table not written yet, a
damaged part, a store written by an older results schema.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Any

import dash_bootstrap_components as dbc
import pandas as pd
from dash import html

from heartbeatai.arms import is_algorithm, is_pseudo_arm
from heartbeatai.results import ResultsStore, schema

ALL_SEEDS = "all"
STUDY_CHOICES = 50  # names in the Study menu at a time
OLD_SCHEMA = ("written by results schema {version}: its analysis tables are not comparable; rerun the study "
              "(or `heartbeatai study analyse DIR` once it has validation predictions)")
NEWER_SCHEMA = ("written by results schema {version}, newer than this dashboard reads ({current}): "
                "update heartbeatai to read it")


class ViewInputError(ValueError):
    """A request the page cannot answer as asked (no such study, a name that could leave the root)."""


def per_store_state(view: Callable) -> Callable:
    """Answer a view from cache while none of the study's tables changed: a refresh that finds
    a new part rebuilds, a filter flipped back and forth does not."""
    @functools.wraps(view)
    def cached(self: "ViewBase", study: str | None, *args):
        study = self.study(study)
        key = (view.__name__, study, json.dumps(args, default=str), self.store.signature(study))
        return self._cached(key, lambda: view(self, study, *args))

    return cached


def options(values) -> list[dict]:
    return [{"label": str(v), "value": v} for v in values]


def table(frame: pd.DataFrame, table_id: str) -> dbc.Table:
    return dbc.Table.from_dataframe(frame, striped=True, bordered=False, hover=True, size="sm", id=table_id)


def unfinished(progress: pd.DataFrame) -> int:
    return int(progress[list(schema.ACTIVE_STATUSES)].to_numpy().sum())


def arm_order(arms) -> list[str]:
    """full first, then the component arms by name, the prevalence floor, and the algorithm arms last.

    Pseudo-arms are dropped here, the one place every arm list of the page passes: the tables
    key a fold's search trials and its search winner's test scores as arm `search` (issue 24)."""
    arms = sorted(a for a in set(arms) if not is_pseudo_arm(a))
    return sorted(arms, key=lambda a: (a != "full", is_algorithm(a), a == schema.PREVALENCE_ARM, a))


class ViewBase:
    def __init__(self, store: ResultsStore):
        self.store = store
        self._figures: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def study(self, study: str | None) -> str:
        """The study, checked: a valid name of a study under the root (else a one-line error)."""
        if not study:
            raise ViewInputError("no study selected: the results root holds none yet")
        try:
            schema.check_study_name(study)
        except ValueError as err:
            raise ViewInputError(str(err)) from None
        if not self.store.has_study(study):  # one lookup, not a listing of thousands of studies
            raise ViewInputError(f"no study named {study!r} under the results root")
        return study

    def alerts(self, study: str, tables: tuple[str, ...]) -> list:
        """How far the tables behind a view can be trusted, said on the page."""
        shown = []
        version = self.store.schema_version(study)
        if version is not None and version != schema.SCHEMA_VERSION:
            text = (OLD_SCHEMA.format(version=version) if version < schema.SCHEMA_VERSION
                    else NEWER_SCHEMA.format(version=version, current=schema.SCHEMA_VERSION))
            shown.append(dbc.Alert(text, color="warning", className="py-2 schema-alert"))
        active = unfinished(self.store.progress(study))
        if active:
            shown.append(dbc.Alert(f"Study in progress: {active} trials running or pending; figures follow as "
                                   "results arrive.", color="info", className="py-2"))
        for name in tables:
            status = self.store.status(study, name)
            if status.state == "corrupt":
                shown.append(dbc.Alert([html.B(f"{name}: {len(status.corrupt)} unreadable part(s) skipped. "),
                                        "; ".join(status.corrupt)], color="danger", className="py-2 corrupt-alert"))
            elif status.state == "missing":
                shown.append(dbc.Alert(f"{name}: not written yet (the study has not reached this stage).",
                                       color="warning", className="py-2 missing-alert"))
        return shown

    def forget(self) -> None:
        """Drop every cached view (the reader's cache of tables stays)."""
        with self._lock:
            self._figures.clear()

    def _cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._figures:
                return self._figures[key]
        built = build()
        with self._lock:
            if len(self._figures) > 256:
                self._figures.clear()
            self._figures[key] = built
        return built

    # -- page chrome --------------------------------------------------------------------

    def study_choices(self, search: str | None, current: str | None) -> list[str]:
        """The Study menu's choices: the first STUDY_CHOICES names holding `search` (any case),
        and the chosen study. A root may hold thousands: the menu never carries them all, the
        browser asks for more as the user types (the studies list shows every one, a page at a time)."""
        names = self.store.studies()
        found = names
        if isinstance(search, str) and search:
            found = [name for name in names if search[:128].lower() in name.lower()]
        choices = found[:STUDY_CHOICES]
        if isinstance(current, str) and current not in choices and current in names:
            choices.append(current)  # the menu keeps showing what is chosen
        return choices

    def refresh(self, study: str | None, signature: str | None) -> tuple[str | None, str | None, Any]:
        """The study to show (the chosen one while it exists, else the first), and the signature
        of its tables (unchanged: None, no re-render)."""
        if not self._exists(study):
            studies = self.store.studies()
            study = studies[0] if studies else None
        if study is None:
            return None, None, dbc.Badge("no studies", color="secondary")
        current = self.store.signature(study)
        active = unfinished(self.store.progress(study))
        badge = (dbc.Badge(f"live: {active} trials running or queued", color="info") if active
                 else dbc.Badge("finished", color="success"))
        return study, (current if current != signature else None), badge

    def _exists(self, study: str | None) -> bool:
        try:
            return isinstance(study, str) and self.store.has_study(study)
        except ValueError:  # not a study name: the page's choice was forged
            return False

    @per_store_state
    def filter_options(self, study: str | None) -> tuple[list, list]:
        """Arms and seeds the study has (arm `search` is the sweep, not an arm)."""
        runs = self.store.read(study, "trials", columns=["arm", "seed"])
        arms = arm_order(runs["arm"].unique())
        seeds = sorted(int(s) for s in runs.loc[runs["arm"] != schema.SEARCH_ARM, "seed"].unique())
        return options(arms), [{"label": "all seeds", "value": ALL_SEEDS}, *options(seeds)]
