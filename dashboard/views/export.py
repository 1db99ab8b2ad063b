"""The Export view: each fold's selected configuration, and the consensus, as a run file."""

from __future__ import annotations

import re

from heartbeatai.dashboard.views.base import ViewBase, per_store_state
from heartbeatai.results import schema


# The store keeps a run file's data.path relative to the study's folder (analysis/consensus.py).
STORED_PATH_NOTE = ("# data.path is relative to the study's folder (<storage>/<study>); "
                    "`heartbeatai export` writes it relative to each file it writes\n")


class ExportViews(ViewBase):
    @per_store_state
    def export_options(self, study: str | None, protocol: str) -> tuple[list, str | None]:
        best = self.store.read(study, "best_configs", filters={"protocol": protocol})
        best = best.assign(first=best["fold_id"] != schema.CONSENSUS_FOLD).sort_values(["first", "fold_id", "selection"])
        options = [{"label": f"{r['fold_id']} ({r['selection']} selection, {_metric_text(r)})",
                    "value": f"{r['fold_id']}|{r['selection']}"} for r in best.to_dict("records")]
        return options, (options[0]["value"] if options else None)

    def _run_file(self, study: str, protocol: str, choice: str | None) -> tuple[str, str] | None:
        if not choice or "|" not in choice:
            return None
        fold, selection = choice.split("|", 1)
        rows = self.store.read(study, "best_configs", filters={"protocol": protocol, "fold_id": fold, "selection": selection})
        if rows.empty:
            return None
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{study}_{fold}_{selection}") + ".yaml"
        return name, STORED_PATH_NOTE + rows.iloc[0]["run_file"]

    def export_preview(self, study: str | None, protocol: str, choice: str | None) -> tuple[list, str]:
        study = self.study(study)
        found = self._run_file(study, protocol, choice)
        return self.alerts(study, ("best_configs",)), (found[1] if found else "No configuration selected yet.")

    def export_download(self, study: str | None, protocol: str, choice: str | None) -> dict | None:
        found = self._run_file(self.study(study), protocol, choice)
        if found is None:
            return None
        name, text = found
        return {"content": text, "filename": name, "type": "application/x-yaml", "base64": False}


def _metric_text(row: dict) -> str:
    """`val_macro_auroc = 0.8123`; a consensus, never trained, has no value to show."""
    value = row.get("value")
    if value is not None and value == value:  # not NaN
        return f"{row['metric']} = {value:.4f}"
    return "not trained: a consensus of the folds' selections" if row["fold_id"] == schema.CONSENSUS_FOLD \
        else f"{row['metric']}: no value"
