"""What each view shows, as plain functions of the results store and the filters.

``Views(store)`` answers every callback of the page: reads through the store (cached by
the parts' mtimes), builds figures with the figure modules, and returns the values of the
callback's outputs in order. Nothing here knows Dash's request machinery, so every view
is tested by calling it. Problems of the data (a study still running, a table not written
yet, a damaged part, an older results schema) come back as alerts in the view's status,
never as exceptions.

One module per view (studies, degradation, ablations, sweeps, records, export), each a
class of the view's methods over ``ViewBase`` (base.py: the store, the study check, the
alerts and the cache); ``Views`` is all of them.
"""

from __future__ import annotations

from heartbeatai.dashboard.views.ablations import AblationsView, AblationViews
from heartbeatai.dashboard.views.base import ALL_SEEDS, ViewBase, ViewInputError
from heartbeatai.dashboard.views.degradation import DecompositionView, DegradationView, DegradationViews
from heartbeatai.dashboard.views.export import ExportViews
from heartbeatai.dashboard.views.records import RecordView, RecordViews
from heartbeatai.dashboard.views.studies import StudiesView, StudiesViews
from heartbeatai.dashboard.views.sweeps import SweepsView, SweepViews


class Views(StudiesViews, DegradationViews, AblationViews, SweepViews, RecordViews, ExportViews):
    """Every view of the page over one results store."""


__all__ = ["ALL_SEEDS", "AblationsView", "DecompositionView", "DegradationView", "RecordView", "StudiesView",
           "SweepsView", "ViewBase", "ViewInputError", "Views"]
