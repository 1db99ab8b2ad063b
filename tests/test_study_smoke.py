"""The smoke study end to end through the command line: plan, run, status, export.

The one fast test of the whole study path on a real Ray (the policy's own tests run against
the in-process fake stage runner): Tune, Optuna, ASHA, checkpoints and the console.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from heartbeatai.run_file import RunFile
from heartbeatai.results import ResultsStore

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "studies" / "configs" / "smoke.yaml"
HEARTBEATAI = str(Path(sys.executable).with_name("heartbeatai"))
TUNE_CHATTER = ("View detailed results here", "To visualize your results with TensorBoard",
                "Configuration for experiment", "Trial status", "╭", "│")
LIBRARY_INFO = ("Started a local Ray instance", "A new study created", "Wrote the latest version of all result files")
FOLD = "lodo:georgia"


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AIR_NEW_OUTPUT", None)
    return subprocess.run([HEARTBEATAI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_study_fills_every_table_and_exports_runnable_configs(tmp_path):
    storage = tmp_path / "runs"
    # The shipped smoke config, tracked into an MLflow store of this test's own (docs/results.md).
    mlruns = tmp_path / "mlflow.db"
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(SMOKE.read_text() + f"tracking: {{kind: mlflow, tracking_uri: 'sqlite:///{mlruns}'}}\n")
    plan = cli("study", "plan", str(smoke), "--storage", str(storage))
    assert plan.returncode == 0, plan.stderr
    assert "lodo:georgia" in plan.stdout and "estimate" in plan.stdout
    assert not storage.exists(), "plan must not start anything"

    run = cli("study", "run", str(smoke), "--storage", str(storage))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "heartbeatai dashboard --results" in run.stdout and "heartbeatai export" in run.stdout
    # The study's own progress, a line per finished trial, and none of Tune's tables.
    for chatter in TUNE_CHATTER:
        assert chatter not in run.stdout, f"Tune's {chatter!r} in the study's output:\n{run.stdout}"
    # Ray's, Tune's and Optuna's INFO lines only with --verbose (study_cli, ray_start.quiet_library_logs).
    for banner in LIBRARY_INFO:
        assert banner not in run.stdout + run.stderr, f"{banner!r} without --verbose:\n{run.stderr}"
    # Each line stamped with the time since the command started, then the fold.
    search_lines = re.findall(rf"^\[\d+:\d\d:\d\d\] \[{FOLD}\] trial \S+ (?:completed|early_stopped) after \d+ s "
                              r"\(\d+ finished\): val_macro_auroc = [\d.]+", run.stdout, re.MULTILINE)
    arm_lines = re.findall(rf"^\[\d+:\d\d:\d\d\] \[{FOLD}\] (?:full|no-se) seed 1 \S+ completed after \d+ s", run.stdout, re.MULTILINE)
    assert len(search_lines) == 2 and len(arm_lines) == 2, run.stdout
    assert f"[{FOLD}] search: 2 trials" in run.stdout

    store = ResultsStore(str(storage))
    trials = store.read("smoke", "trials").drop_duplicates("trial_id", keep="last")
    search = trials[trials["arm"] == "search"]
    assert len(search) == 2 and set(search["status"]) <= {"completed", "early_stopped"}
    assert search["cfg.mixstyle.p"].between(0, 1).all() and search["checkpoint_path"].notna().all()
    assert set(trials.loc[trials["arm"] != "search", "arm"]) == {"full", "no-se"}
    # what each trial computed in, as its worker resolved it (conftest pins fp32; Ray's workers inherit it)
    assert {json.loads(p)["precision"] for p in trials["provenance"]} == {"fp32"}
    assert not store.read("smoke", "epochs").empty

    tested = store.read("smoke", "fold_metrics", filters={"split": "test", "metric": "macro_auroc"})
    runs = set(zip(tested["arm"], tested["selection"]))
    assert runs >= {("search", "val"), ("search", "oracle"), ("full", "val"), ("no-se", "val"), ("prevalence", "val")}
    assert set(tested["label_set"]) == {"noisy", "clean"}  # the synthetic manifest's clean labels
    assert (tested["ci_low"] <= tested["value"]).all() and (tested["value"] <= tested["ci_high"]).all()
    predictions = store.read("smoke", "predictions", filters={"arm": "full", "split": "test"})
    assert len(predictions) == 30 and set(predictions["domain"]) == {"georgia"}  # the whole held-out domain
    calibration = store.read("smoke", "predictions", filters={"arm": "full", "split": "val"})
    # the training domains' validation records, every one of them, as the folds file plans them
    planned = _planned_val(storage)
    assert sorted(calibration["record_id"]) == planned and "georgia" not in set(calibration["domain"])

    assert set(store.read("smoke", "dataset_card")["domain"]) == {"cpsc", "ptbxl", "georgia"}
    views = store.read("smoke", "record_views")
    assert len(views) == 2 and len(json.loads(views["signal"].iloc[0])) == 12
    best = store.read("smoke", "best_configs")
    assert {"val", "oracle"} <= set(best["selection"]) and "consensus" in set(best["fold_id"])
    assert set(store.read("smoke", "ablation_tests")["arm"]) == {"no-se", "prevalence"}

    status = cli("study", "status", str(storage / "smoke"))
    assert status.returncode == 0 and "lodo:georgia" in status.stdout and "arms" in status.stdout

    exported = cli("export", str(storage / "smoke"), "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    files = sorted((tmp_path / "export").glob("*.yaml"))
    assert {f.name for f in files} >= {"lodo__lodo_georgia.yaml", "consensus.yaml"}
    run_file = RunFile.load(tmp_path / "export" / "lodo__lodo_georgia.yaml")
    assert run_file.fold_id == "lodo:georgia" and run_file.classes == ("AF", "RBBB", "NSR", "SB", "TAb", "LAD")

    # The other viewers docs/results.md names, reading what they read. TensorBoard: Tune's event
    # files under <study>/ray, a validation curve per trial.
    tags = _tensorboard_tags(storage / "smoke" / "ray")
    assert "ray/tune/val_macro_auroc" in tags, sorted(tags)[:20]
    # optuna-dashboard: the fold's journal file opens as Optuna's journal storage, its search in it.
    import optuna

    (journal,) = (storage / "smoke" / "optuna").glob("*.log")
    opened = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    searched = [s.n_trials for s in optuna.get_all_study_summaries(opened)]
    assert searched == [2], searched
    # MLflow: a run per trial in the study's experiment, each with what Tune gave the trial (the
    # sampled values of a search trial, the arm and seed of an arm run) and the validation metric.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{mlruns}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert all("val_macro_auroc" in r.data.metrics for r in runs)
    searched = sorted(float(r.data.params["mixstyle.p"]) for r in runs if "mixstyle.p" in r.data.params)
    assert searched == sorted(search["cfg.mixstyle.p"])
    assert sorted(r.data.params.get("arm", "") for r in runs if "arm" in r.data.params) == ["full", "no-se"]


def _tensorboard_tags(root: Path) -> set[str]:
    """The scalar tags of every TensorBoard event file under `root`, read as TFRecords (a length,
    its CRC, the serialized Event, its CRC) with tensorboardX's Event message."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    tags: set[str] = set()
    for path in root.rglob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            at += 12 + length + 4
    return tags


def _planned_val(storage: Path) -> list[str]:
    from heartbeatai.data.folds import fold_records, read_folds

    (prepared,) = storage.glob("_data/synthetic-*/prepared")
    return sorted(fold_records(read_folds(prepared, "lodo")[0], FOLD)["val"])
