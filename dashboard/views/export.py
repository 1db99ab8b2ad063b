"""The Export view: each fold's selected configuration, and the consensus, as a run file; the
study's report (heartbeatai report) as an archive built on demand, and any table as LaTeX."""

from __future__ import annotations

import base64
import io
import re
import tempfile
import zipfile
from pathlib import Path

from heartbeatai.dashboard.views.base import ViewBase, ViewInputError, per_store_state
from heartbeatai.analysis.consensus import of_arm
from heartbeatai.arms import SEARCH
from heartbeatai.results import schema


# The store keeps a run file's data.path relative to the study's folder (analysis/consensus.py).
STORED_PATH_NOTE = ("# data.path is relative to the study's folder (<storage>/<study>); "
                    "`heartbeatai export` writes it relative to each file it writes\n")


class ExportViews(ViewBase):
    @per_store_state
    def export_options(self, study: str | None, protocol: str) -> tuple[list, str | None]:
        """full's selections first (the consensus on top), then each algorithm arm's."""
        best = self.store.read(study, "best_configs", filters={"protocol": protocol})
        best = best.assign(arm=schema.searched_by(best))
        best = best.assign(algorithm=best["arm"] != SEARCH, first=best["fold_id"] != schema.CONSENSUS_FOLD)
        best = best.sort_values(["algorithm", "arm", "first", "fold_id", "selection"])
        options = [{"label": (f"{r['arm']}: " if r["algorithm"] else "")
                    + f"{r['fold_id']} ({r['selection']} selection, {_metric_text(r)})",
                    "value": f"{r['fold_id']}|{r['selection']}|{r['arm']}"} for r in best.to_dict("records")]
        return options, (options[0]["value"] if options else None)

    def _run_file(self, study: str, protocol: str, choice: str | None) -> tuple[str, str] | None:
        if not choice or "|" not in choice:
            return None
        fold, selection, arm = (choice.split("|", 2) + [SEARCH])[:3]
        rows = of_arm(self.store.read(study, "best_configs", filters={
            "protocol": protocol, "fold_id": fold, "selection": selection}), arm)
        if rows.empty:
            return None
        own = "" if arm == SEARCH else f"_{arm}"
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{study}{own}_{fold}_{selection}") + ".yaml"
        return name, STORED_PATH_NOTE + rows.iloc[-1]["run_file"]

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


    # -- the report ---------------------------------------------------------------------------

    def _study_dir(self, study: str) -> Path:
        if "://" in self.store.root:
            raise ViewInputError("the report is built from a local results root; run `heartbeatai report` where "
                                 "the store is mounted")
        return Path(self.store.root) / study

    def report_latex(self, study: str | None, key: str | None) -> str:
        """One report table as LaTeX (booktabs), for the clipboard."""
        from heartbeatai.report import formats
        from heartbeatai.report.tables import TABLES, ReportInputs
        from heartbeatai.results.notebook import open_study

        study = self.study(study)
        if key not in TABLES:
            return "Choose a table."
        running = self.store.progress(study)[list(schema.ACTIVE_STATUSES)].to_numpy().sum() > 0
        try:
            table = TABLES[key](ReportInputs(open_study(self._study_dir(study))))
        except (LookupError, ViewInputError) as err:
            return f"% {key}: not available ({err})"
        return formats.to_tex(table, bool(running))

    def report_archive(self, study: str | None) -> dict:
        """The whole report as a zip (a running study's marked partial), for dcc.Download."""
        from heartbeatai.report.build import write_report

        study = self.study(study)
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / f"{study}-report"
            write_report(self._study_dir(study), out, partial=True, progress=lambda line: None,
                         command=f"heartbeatai report <storage>/{study} --out {study}-report")
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(out.iterdir()):
                    archive.write(path, f"{out.name}/{path.name}")
        return {"content": base64.b64encode(buffer.getvalue()).decode(), "filename": f"{study}-report.zip",
                "type": "application/zip", "base64": True}


def _metric_text(row: dict) -> str:
    """`val_macro_auroc = 0.8123`; a consensus, never trained, has no value to show."""
    value = row.get("value")
    if value is not None and value == value:  # not NaN
        return f"{row['metric']} = {value:.4f}"
    return "not trained: a consensus of the folds' selections" if row["fold_id"] == schema.CONSENSUS_FOLD \
        else f"{row['metric']}: no value"
