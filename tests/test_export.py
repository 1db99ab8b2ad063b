"""Consensus configuration and best-config export (run files `train --config` runs as they are)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from heartbeatai.config import TrialConfig
from heartbeatai.run_file import RunFile
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.analysis.consensus import consensus_config, consensus_value
from heartbeatai.analysis.consensus import (
    NOT_TRAINED, best_config_rows, consensus_rows, parse_run_file, run_file_text,
)
from heartbeatai.study.export import ExportError, export_study

from train_fixtures import tiny_run_file, write_planted_dataset


def test_consensus_value_is_the_median_of_numbers_and_the_mode_otherwise():
    assert consensus_value([0.1, 0.9, 0.5, 0.2]) == pytest.approx(0.35)
    assert consensus_value([16, 32, 64]) == 32 and isinstance(consensus_value([16, 33]), int)
    assert consensus_value(["asl", "bce", "bce"]) == "bce"
    assert consensus_value(["focal", "asl"]) == "focal"  # a tie goes to the first fold
    assert consensus_value([True, False, False]) is False
    assert consensus_value([None, 45.0, None]) is None  # "off" in most folds stays off
    assert consensus_value([[1, 2], [1, 2, 3], [1, 2]]) == [1, 2]


def test_consensus_config_is_a_validated_trial_config_field_by_field():
    folds = [
        TrialConfig().with_overrides({"mixstyle.p": p, "loss.kind": kind, "label_smoothing": e,
                                      "optim.batch_size": b})
        for p, kind, e, b in ((0.1, "asl", 0.0, 32), (0.8, "bce", 0.15, 64), (0.6, "bce", 0.05, 128))
    ]
    consensus = consensus_config(folds)
    assert isinstance(consensus, TrialConfig)
    assert consensus.mixstyle.p == pytest.approx(0.6)
    assert consensus.loss.kind == "bce"
    assert consensus.label_smoothing == pytest.approx(0.05)
    assert consensus.optim.batch_size == 64
    assert consensus.model == TrialConfig().model  # fields every fold agrees on are untouched


def _run_file(fold_id: str, **overrides) -> RunFile:
    return RunFile(data={"path": "/data/prepared", "fingerprint": "f0"}, fold_id=fold_id,
                   classes=("AF", "RBBB"), trial=TrialConfig().with_overrides(overrides))


def _store_with_selections(tmp_path, study="st"):
    writer = ResultsWriter(tmp_path / study)
    selections = [
        ("lodo", "lodo:cpsc", "val", _run_file("lodo:cpsc", **{"mixstyle.p": 0.2, "loss.kind": "bce"}), 0.81),
        ("lodo", "lodo:ptbxl", "val", _run_file("lodo:ptbxl", **{"mixstyle.p": 0.4, "loss.kind": "asl"}), 0.77),
        ("lodo", "lodo:georgia", "val", _run_file("lodo:georgia", **{"mixstyle.p": 0.9, "loss.kind": "bce"}), 0.74),
        ("lodo", "lodo:georgia", "oracle", _run_file("lodo:georgia", **{"mixstyle.p": 0.0}), 0.79),
        ("intra", "intra:cpsc:0", "val", _run_file("intra:cpsc:0", **{"mixstyle.p": 0.3}), 0.9),
    ]
    for protocol, fold_id, selection, run, value in selections:
        writer.write("best_configs", best_config_rows(study, protocol, fold_id, selection, run,
                                                      "val_macro_auroc", value))
    return writer


def test_export_writes_one_loadable_run_file_per_fold_and_the_consensus(tmp_path):
    _store_with_selections(tmp_path)
    written = export_study(tmp_path / "st", tmp_path / "out")
    assert sorted(p.name for p in written) == [
        "consensus.yaml", "intra__consensus.yaml", "intra__intra_cpsc_0.yaml",
        "lodo__lodo_cpsc.yaml", "lodo__lodo_georgia.yaml", "lodo__lodo_ptbxl.yaml"]
    georgia = RunFile.load(tmp_path / "out" / "lodo__lodo_georgia.yaml")
    assert georgia.trial.mixstyle.p == 0.9  # the val selection, never the oracle's
    consensus = RunFile.load(tmp_path / "out" / "consensus.yaml")
    assert consensus.trial.mixstyle.p == pytest.approx(0.4)
    assert consensus.trial.loss.kind == "bce"
    assert consensus.fold_id.startswith("lodo:") and consensus.classes == ("AF", "RBBB")


def test_each_algorithm_arms_selections_are_exported_into_its_own_folder(tmp_path):
    writer = _store_with_selections(tmp_path)  # full's rows
    # ... and one as a store of before algorithm arms had rows wrote it: no arm, which is full's.
    older = best_config_rows("st", "lodo", "lodo:chapman", "val", _run_file("lodo:chapman", **{"mixstyle.p": 0.5}),
                             "val_macro_auroc", 0.7)
    writer.write("best_configs", older.assign(arm=None))
    for fold_id, p in (("lodo:cpsc", 0.1), ("lodo:ptbxl", 0.3), ("lodo:georgia", 0.8)):
        run = _run_file(fold_id, **{"algorithm.kind": "vrex", "algorithm.penalty_weight": p})
        writer.write("best_configs", best_config_rows("st", "lodo", fold_id, "val", run, "val_macro_auroc", 0.7,
                                                      arm="algorithm-vrex"))
    written = export_study(tmp_path / "st", tmp_path / "out")
    mine = sorted(str(p.relative_to(tmp_path / "out")) for p in written if p.parent.name == "algorithm-vrex")
    assert mine == ["algorithm-vrex/consensus.yaml", "algorithm-vrex/lodo__lodo_cpsc.yaml",
                    "algorithm-vrex/lodo__lodo_georgia.yaml", "algorithm-vrex/lodo__lodo_ptbxl.yaml"]
    assert RunFile.load(tmp_path / "out" / "algorithm-vrex" / "lodo__lodo_georgia.yaml").trial.algorithm.kind == "vrex"
    consensus = RunFile.load(tmp_path / "out" / "algorithm-vrex" / "consensus.yaml").trial
    assert consensus.algorithm.kind == "vrex" and consensus.algorithm.penalty_weight == pytest.approx(0.3)
    # full's files are as before, from full's rows alone, the arm-less one among them
    assert (tmp_path / "out" / "lodo__lodo_chapman.yaml").exists()
    assert RunFile.load(tmp_path / "out" / "consensus.yaml").trial.mixstyle.p == pytest.approx(0.45)
    assert RunFile.load(tmp_path / "out" / "lodo__lodo_georgia.yaml").trial.algorithm.kind == "erm"
    # the analysis records one consensus per arm and protocol, and a rerun replaces them
    store = ResultsStore(str(tmp_path))
    rows = consensus_rows(store, "st")
    assert sorted(zip(rows["arm"], rows["protocol"])) == [("algorithm-vrex", "lodo"), ("search", "intra"),
                                                          ("search", "lodo")]


def test_a_consensus_recorded_by_the_study_is_exported_as_recorded(tmp_path):
    writer = _store_with_selections(tmp_path)
    store = ResultsStore(str(tmp_path))
    rows = consensus_rows(store, "st")
    assert sorted(rows["protocol"]) == ["intra", "lodo"] and rows["value"].isna().all()
    writer.write("best_configs", rows)
    stored = store.read("st", "best_configs", filters={"fold_id": "consensus"})
    assert sorted(stored["protocol"]) == ["intra", "lodo"]
    export_study(tmp_path / "st", tmp_path / "out")
    exported = RunFile.load(tmp_path / "out" / "consensus.yaml")
    recorded = parse_run_file(rows.set_index("protocol").loc["lodo", "run_file"], tmp_path / "st")
    assert exported.data.path == recorded.data.path == "/data/prepared"  # the same dataset, however written
    assert exported.model_dump(exclude={"data"}) == recorded.model_dump(exclude={"data"})
    assert exported.provenance.consensus_of == ("lodo:cpsc", "lodo:georgia", "lodo:ptbxl")
    assert exported.provenance.trial_id is None and exported.provenance.selected_value is None


def test_exporting_a_study_without_selections_is_a_one_line_error(tmp_path):
    ResultsWriter(tmp_path / "empty")
    with pytest.raises(ExportError, match="no recorded best configurations"):
        export_study(tmp_path / "empty", tmp_path / "out")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_dataset(tmp_path_factory.mktemp("planted") / "data", records_per_domain=30,
                                 seconds=4.0)


def _recorded_value(run: RunFile) -> float:
    from heartbeatai.training.loop import run_training
    from heartbeatai.training.spec import TrainSpec

    values = []
    spec = TrainSpec(trial=run.trial, data_path=run.data.path, fold_id=run.fold_id,
                     classes=run.classes, selection_metric=run.selection_metric)
    run_training(spec, report=lambda metrics, _: values.append(metrics[run.selection_metric]))
    return max(values)


def test_check_reruns_an_exported_run_file_and_compares_its_metric(tmp_path, planted, capsys):
    torch.set_num_threads(1)
    run = tiny_run_file(planted, **{"optim.epochs": 1})
    recorded = _recorded_value(run)
    assert np.isfinite(recorded)
    ResultsWriter(tmp_path / "st").write("best_configs", best_config_rows(
        "st", "lodo", run.fold_id, "val", run_file_text(run), run.selection_metric, recorded))
    export_study(tmp_path / "st", tmp_path / "out", check=True, tolerance=1e-6)
    assert f"recorded val_macro_auroc = {recorded:.4f}, rerun = {recorded:.4f}" in capsys.readouterr().out

    ResultsWriter(tmp_path / "off").write("best_configs", best_config_rows(
        "off", "lodo", run.fold_id, "val", run_file_text(run), run.selection_metric, recorded - 0.3))
    with pytest.raises(ExportError, match="check failed"):
        export_study(tmp_path / "off", tmp_path / "out_off", check=True)


def test_a_stored_selection_names_its_study_trial_and_value_and_its_data_relative_to_the_study(tmp_path, planted):
    study_dir = tmp_path / "storage" / "st"
    row = best_config_rows("st", "lodo", "lodo:gamma", "val", tiny_run_file(planted), "val_macro_auroc", 0.875,
                           trial_id="abc_00001", study_dir=study_dir)
    text = row["run_file"].iloc[0]
    assert str(tmp_path) not in text
    stored = parse_run_file(text, study_dir)
    assert stored.data.path == str(planted.resolve())
    assert (stored.provenance.study, stored.provenance.selection, stored.provenance.trial_id,
            stored.provenance.selected_value) == ("st", "val", "abc_00001", 0.875)


def test_the_consensus_row_says_it_was_never_trained(tmp_path):
    _store_with_selections(tmp_path)
    rows = consensus_rows(ResultsStore(str(tmp_path)), "st")
    assert (rows["metric"] == NOT_TRAINED).all() and rows["value"].isna().all()


def test_exported_files_hold_no_path_of_this_machine_and_say_which_classes_had_positives(tmp_path, planted):
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.data.prepared import PreparedDataset

    study_dir = tmp_path / "storage" / "st"
    run = tiny_run_file(planted).model_copy(update={"classes": ("AF", "RBBB", "LAD")})
    ResultsWriter(study_dir).write("best_configs", best_config_rows(
        "st", "lodo", run.fold_id, "val", run, "val_macro_auroc", 0.8, trial_id="t1", study_dir=study_dir))
    written = export_study(study_dir, tmp_path / "moved" / "best")
    dataset = PreparedDataset(planted)
    train = fold_records(read_folds(planted, "lodo")[0], run.fold_id)["train"]
    expected = dict(zip(run.classes, dataset.labels(run.classes)[dataset.index_of(train)].sum(axis=0).tolist()))
    for path in written:
        text = path.read_text()
        assert str(tmp_path) not in text and "/tmp/" not in text, text
        exported = RunFile.load(path)
        assert exported.data.path == str(planted.resolve())
        # A fold's file keeps its classes and shows LAD's 0; the consensus leaves LAD out (and says so).
        kept = {k: v for k, v in expected.items() if v} if path.name == "consensus.yaml" else expected
        assert exported.provenance.train_positives == kept and expected["LAD"] == 0 < expected["AF"]


def test_the_consensus_says_which_fold_it_trains_on_and_leaves_out_classes_that_fold_never_saw(tmp_path, planted):
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.data.prepared import PreparedDataset

    base = tiny_run_file(planted).with_fields(classes=["AF", "RBBB", "LBBB"])  # LBBB: no record has it
    writer = ResultsWriter(tmp_path / "st")
    for fold in ("lodo:beta", "lodo:gamma"):
        writer.write("best_configs", best_config_rows("st", "lodo", fold, "val", run_file_text(
            base.with_fields(fold_id=fold)), "val_macro_auroc", 0.9))
    export_study(tmp_path / "st", tmp_path / "out")
    text = (tmp_path / "out" / "consensus.yaml").read_text()
    consensus = RunFile.load(tmp_path / "out" / "consensus.yaml")
    dataset = PreparedDataset(planted)
    train = fold_records(read_folds(planted, "lodo")[0], consensus.fold_id)["train"]
    counts = dict(zip(["AF", "RBBB", "LBBB"], dataset.labels(["AF", "RBBB", "LBBB"])[dataset.index_of(train)].sum(0)))
    assert counts["LBBB"] == 0 and counts["AF"] > 0 and counts["RBBB"] > 0
    assert consensus.classes == ("AF", "RBBB") and consensus.provenance.train_positives == {
        "AF": counts["AF"], "RBBB": counts["RBBB"]}
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(f"trains on {consensus.fold_id}, the first of them in plan order" in line for line in header)
    assert any(f"no training positive in {consensus.fold_id}: LBBB" in line for line in header)
