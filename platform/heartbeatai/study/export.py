"""Best configurations as run files: what `heartbeatai export` writes and `train --config` runs.

The study records each fold's selected run file (YAML text) in the best_configs table,
and one consensus per protocol (fold_id "consensus"). Export writes them out as
``<protocol>__<fold>.yaml`` per fold (':' in fold ids becomes '_') and ``consensus.yaml``
(the LODO consensus; an intra-source one, if any, beside it as
``intra__consensus.yaml``). Only training-domain-validation selections are exported:
the oracle selection is an upper bound, never a configuration to deploy. A study comparing
algorithms selected one configuration per fold for each algorithm arm as well: those go, named
alike, into ``<out>/<arm>/`` (``best/algorithm-vrex/consensus.yaml``).

Each file is the stored one with data.path rewritten relative to the exported file (the
store keeps it relative to the study directory; a store of an older version, absolute),
and with `provenance.train_positives`: the positives per class in the fold's training
split, read from the prepared dataset when it is reachable, so a class that was never
positive is visible as such. Provenance names the study, selection, trial and selected
value (a consensus: the folds it merges).

A consensus run file keeps the data of the first fold's run file and its fold id: it trains
on that fold as it is, on any other with ``--fold``, and says so in a comment at its top. Of
that run file's classes it keeps those with a training positive in the fold (where the data
is reachable), and names the others in the comment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from heartbeatai.metric_names import metric_mode
from heartbeatai.results import ResultsStore
from heartbeatai.results.schema import CONSENSUS_FOLD
from heartbeatai.analysis.consensus import (
    EXPORTED_SELECTION, consensus_rows, fold_selections, of_arm, parse_run_file, selected_arms,
)
from heartbeatai.arms import SEARCH
from heartbeatai.run_file import RunFile

CONSENSUS_FILE = "consensus.yaml"
# A rerun on CPU with the same seed repeats exactly; a study trained with several Ray
# workers or on GPU does not, so the check allows this much difference by default.
CHECK_TOLERANCE = 0.02


class ExportError(RuntimeError):
    """Nothing to export, or an exported run does not rerun to its recorded metric."""


def export_study(
    study_dir: str | Path, out_dir: str | Path, check: bool = False, tolerance: float = CHECK_TOLERANCE
) -> list[Path]:
    """Write the study's selected run files and consensus into ``out_dir``; return their paths.

    ``check`` retrains the first exported LODO fold (or the first fold) from its run file
    and compares its best validation value of the selection metric with the recorded one,
    printing both; a difference beyond ``tolerance`` is an error.
    """
    root, _, study = str(study_dir).rstrip("/").rpartition("/")
    store = ResultsStore(root or ".")
    every_arm = fold_selections(store, study, arm=None)
    folds = of_arm(every_arm, SEARCH)
    if folds.empty:
        raise ExportError(f"study {study!r} has no recorded best configurations yet (is its search finished?)")
    out = Path(out_dir)
    study_path = Path(root or ".") / study
    stored = store.read(study, "best_configs", filters={"fold_id": CONSENSUS_FOLD,
                                                        "selection": EXPORTED_SELECTION})
    computed = consensus_rows(store, study)  # where the study has not recorded an arm's consensus yet
    written = []
    for arm in selected_arms(every_arm):
        where = out if arm == SEARCH else out / arm
        where.mkdir(parents=True, exist_ok=True)
        for row in of_arm(every_arm, arm).itertuples(index=False):
            written.append(_write(where / f"{row.protocol}__{row.fold_id.replace(':', '_')}.yaml", row.run_file,
                                  study_path))
        consensus = of_arm(stored, arm)
        if consensus.empty:
            consensus = of_arm(computed, arm)
        main_protocol = "lodo" if "lodo" in set(consensus["protocol"]) else consensus["protocol"].iloc[0]
        for row in consensus.sort_values("protocol").itertuples(index=False):
            name = CONSENSUS_FILE if row.protocol == main_protocol else f"{row.protocol}__{CONSENSUS_FILE}"
            written.append(_write(where / name, row.run_file, study_path, consensus=True))

    if check:
        ordered = folds.assign(not_lodo=folds["protocol"] != "lodo").sort_values(["not_lodo", "fold_id"])
        target = ordered.iloc[0]
        if pd.isna(target["value"]):
            raise ExportError(f"{target['fold_id']}: no recorded {target['metric']} to check against")
        path = out / f"{target['protocol']}__{target['fold_id'].replace(':', '_')}.yaml"
        check_run_file(path, float(target["value"]), tolerance)
    return written


def check_run_file(path: Path, recorded: float, tolerance: float) -> float:
    """Retrain an exported run file as it is; compare its selection metric with ``recorded``."""
    from heartbeatai.data.prepared import PreparedDataset
    from heartbeatai.training.loop import format_progress, run_training
    from heartbeatai.training.spec import TrainSpec

    run = RunFile.load(path)
    if run.data.path is None:
        raise ExportError(f"{path}: --check needs a prepared dataset path in data.path")
    fingerprint = PreparedDataset(run.data.path).fingerprint
    if run.data.fingerprint is not None and fingerprint != run.data.fingerprint:
        raise ExportError(f"{path}: dataset {run.data.path} has fingerprint {fingerprint}, "
                        f"the run file was selected on {run.data.fingerprint}")
    metric = run.selection_metric
    values: list[float] = []

    def report(metrics: dict[str, Any], _checkpoint: Path | None) -> None:
        values.append(float(metrics[metric]))
        print(f"check {path.name}: {format_progress(metrics, run.trial.optim.epochs)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="heartbeatai-export-check-") as staging:
        spec = TrainSpec(trial=run.trial, data_path=run.data.path, fold_id=run.fold_id,
                         classes=run.classes, selection_metric=metric, out_dir=staging)
        run_training(spec, report=report)
    rerun = min(values) if metric_mode(metric) == "min" else max(values)
    print(f"check {path.name}: recorded {metric} = {recorded:.4f}, rerun = {rerun:.4f} "
          f"(difference {rerun - recorded:+.4f}, tolerance {tolerance})")
    if not abs(rerun - recorded) <= tolerance:
        raise ExportError(f"check failed: {path.name} reran to {metric} {rerun:.4f}, "
                        f"recorded {recorded:.4f} (tolerance {tolerance})")
    return rerun


def _write(path: Path, text: str, study_dir: Path, consensus: bool = False) -> Path:
    """A stored run file, validated, written with data.path relative to it and its training positives.
    Its provenance names the study by its folder, as everything else does: a copied study's run
    files were recorded under the name it was run with. A consensus says which fold it trains on
    and why, and leaves out the classes that fold has no training positive of."""
    run = parse_run_file(text, study_dir)
    update = {"study": study_dir.name} if run.provenance.study is not None else {}
    positives = train_positives(run)
    dropped = [name for name, count in (positives or {}).items() if count == 0] if consensus else []
    if dropped:
        run = run.with_fields(classes=[name for name in run.classes if name not in dropped])
        positives = {name: count for name, count in positives.items() if name not in dropped}
    if positives is not None:
        update["train_positives"] = positives
    if update:
        run = run.model_copy(update={"provenance": run.provenance.model_copy(update=update)})
    run.dump(path)
    if consensus:
        note = [f"# The consensus of the folds' selected configurations ({', '.join(run.provenance.consensus_of)}).",
                f"# It trains on {run.fold_id}, the first of them in plan order, as it is; `heartbeatai train",
                "# --config THIS --fold <fold id>` trains it on another."]
        if dropped:
            note.append(f"# Left out, with no training positive in {run.fold_id}: {', '.join(dropped)}.")
        path.write_text("\n".join(note) + "\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def train_positives(run: RunFile) -> dict[str, int] | None:
    """Positives per class of the run file in its fold's training split; None when the data is not here."""
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.data.prepared import NotPreparedError, PreparedDataset

    if run.data.path is None or run.classes is None:
        return None
    try:
        dataset = PreparedDataset(run.data.path)
        table, _ = read_folds(dataset.path, run.protocol)
        train = fold_records(table, run.fold_id)["train"]
        labels = dataset.labels(run.classes)[dataset.index_of(train)]
    except (NotPreparedError, FileNotFoundError, KeyError):
        return None
    return {name: int(count) for name, count in zip(run.classes, labels.sum(axis=0))}


