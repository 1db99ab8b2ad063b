"""The results store: what writers may write, and what readers see of it."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from heartbeatai.results import ResultsStore, ResultsWriter, schema

KEY = dict(protocol="lodo", fold_id="lodo:cpsc", arm="search", seed=0, selection="search")
_ABLATION = dict(protocol="lodo", metric="macro_auroc", arm="no-se", scope="fold", fold_id="lodo:cpsc")


def _trial(trial_id: str, status: str, **extra) -> dict:
    return dict(KEY, trial_id=trial_id, status=status, **extra)


@pytest.fixture
def writer(tmp_path):
    return ResultsWriter(tmp_path / "demo")


def test_a_later_part_overrides_rows_with_the_same_identity(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "running"), _trial("t2", "running")]))
    writer.write("trials", pd.DataFrame([_trial("t1", "completed", val_macro_auroc=0.91, best_epoch=4)]))

    trials = ResultsStore(tmp_path).read("demo", "trials").set_index("trial_id")

    assert trials.loc["t1", "status"] == "completed"
    assert trials.loc["t1", "val_macro_auroc"] == pytest.approx(0.91)
    assert trials.loc["t2", "status"] == "running"
    assert len(trials) == 2


def test_the_writer_fills_the_study_and_stores_flattened_config_columns(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "completed", **{"cfg.mixstyle.p": 0.3, "cfg.loss.kind": "asl"})]))

    trials = ResultsStore(tmp_path).read("demo", "trials")

    assert trials.loc[0, "study"] == "demo"
    assert trials.loc[0, "cfg.mixstyle.p"] == pytest.approx(0.3)
    assert trials.loc[0, "cfg.loss.kind"] == "asl"


@pytest.mark.parametrize(
    "row, message",
    [
        (_trial("t1", "finished"), "status"),
        ({**_trial("t1", "completed"), "protocol": "loso"}, "protocol"),
        ({k: v for k, v in _trial("t1", "completed").items() if k != "seed"}, "missing required"),
        ({**_trial("t1", "completed"), "val_auroc": 0.5}, "unknown column"),
        ({**_trial("t1", "completed"), "study": "other"}, "study"),
        ({**_trial("t1", "completed"), "best_epoch": "three"}, "best_epoch"),
    ],
)
def test_the_writer_refuses_rows_the_schema_does_not_allow(writer, row, message):
    with pytest.raises(ValueError, match=message):
        writer.write("trials", pd.DataFrame([row]))


def test_two_rows_with_one_identity_in_one_write_are_refused(writer):
    with pytest.raises(ValueError, match="identity"):
        writer.write("trials", pd.DataFrame([_trial("t1", "running"), _trial("t1", "completed")]))


def test_replace_drops_the_matching_rows_of_earlier_parts(tmp_path, writer):
    epochs = [dict(KEY, trial_id="t1", epoch=e, val_macro_auroc=0.5 + e / 10) for e in range(4)]
    writer.write("epochs", pd.DataFrame(epochs + [dict(KEY, trial_id="t2", epoch=0)]))

    writer.replace("epochs", pd.DataFrame(epochs[:2]), where={"trial_id": "t1"})

    stored = ResultsStore(tmp_path).read("demo", "epochs")
    assert sorted(stored.loc[stored.trial_id == "t1", "epoch"]) == [0, 1]
    assert list(stored.loc[stored.trial_id == "t2", "epoch"]) == [0]


def test_a_missing_table_reads_as_an_empty_frame_with_the_schema_columns(tmp_path, writer):
    store = ResultsStore(tmp_path)

    frame = store.read("demo", "class_metrics")

    assert frame.empty
    assert list(frame.columns) == list(schema.TABLES["class_metrics"].columns)
    assert store.status("demo", "class_metrics").state == "missing"


def test_a_corrupt_part_is_reported_and_the_readable_parts_still_read(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))
    (tmp_path / "demo" / "results" / "trials" / "part-99999999999999999999-broken.parquet").write_bytes(b"PAR1 not parquet")
    store = ResultsStore(tmp_path)

    frame = store.read("demo", "trials")

    assert list(frame.trial_id) == ["t1"]
    assert frame.attrs["corrupt"] and "part-99999999999999999999-broken.parquet" in frame.attrs["corrupt"][0]
    assert store.status("demo", "trials").state == "corrupt"
    assert str(tmp_path) not in frame.attrs["corrupt"][0]


def test_temporary_files_of_a_write_in_progress_are_never_read(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))
    (tmp_path / "demo" / "results" / "trials" / ".part-x.parquet.tmp").write_bytes(b"half a file")

    store = ResultsStore(tmp_path)

    assert len(store.read("demo", "trials")) == 1
    assert store.status("demo", "trials").state == "ok"


def test_the_cache_notices_new_parts(tmp_path, writer):
    store = ResultsStore(tmp_path)
    writer.write("trials", pd.DataFrame([_trial("t1", "running")]))
    before = store.signature("demo", ["trials"])
    assert len(store.read("demo", "trials")) == 1

    writer.write("trials", pd.DataFrame([_trial("t2", "running")]))

    assert len(store.read("demo", "trials")) == 2
    assert store.signature("demo", ["trials"]) != before
    assert store.signature("demo", ["epochs"]) == store.signature("demo", ["epochs"])


def test_filters_and_columns_select_rows_and_reject_unknown_columns(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "completed"), _trial("t2", "errored", error="OOM")]))
    store = ResultsStore(tmp_path)

    frame = store.read("demo", "trials", columns=["trial_id", "error"], filters={"status": ["errored"]})

    assert frame.to_dict("records") == [{"trial_id": "t2", "error": "OOM"}]
    with pytest.raises(ValueError, match="no column"):
        store.read("demo", "trials", filters={"statuz": "errored"})


def test_progress_counts_trials_per_fold_and_status(tmp_path, writer):
    rows = [_trial(f"t{i}", s) for i, s in enumerate(["completed", "completed", "early_stopped", "running", "errored"])]
    rows.append(dict(_trial("u1", "pending"), fold_id="lodo:ptbxl"))
    writer.write("trials", pd.DataFrame(rows))

    progress = ResultsStore(tmp_path).progress("demo").set_index("fold_id")

    assert progress.loc["lodo:cpsc", ["completed", "early_stopped", "running", "errored", "total"]].tolist() == [2, 1, 1, 1, 5]
    assert progress.loc["lodo:ptbxl", "pending"] == 1


@pytest.mark.parametrize("name", ["../etc", "..", ".", "a/b", "", "x" * 200, "/abs"])
def test_study_names_that_could_leave_the_root_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="invalid study name"):
        ResultsStore(tmp_path).read(name, "trials")


def test_studies_lists_only_folders_with_results(tmp_path, writer):
    (tmp_path / "notastudy").mkdir()
    (tmp_path / "stray.txt").write_text("x")

    assert ResultsStore(tmp_path).studies() == ["demo"]
    assert json.loads((tmp_path / "demo" / "results" / "schema_version.json").read_text())["schema_version"] == schema.SCHEMA_VERSION
    assert ResultsStore(tmp_path).schema_version("demo") == schema.SCHEMA_VERSION and ResultsStore(tmp_path).schema_version("x") is None


def test_a_store_of_another_schema_version_is_refused(tmp_path, writer):
    (tmp_path / "demo" / "results" / "schema_version.json").write_text(json.dumps({"schema_version": 99}))

    with pytest.raises(ValueError, match="schema 99"):
        ResultsWriter(tmp_path / "demo")


def test_a_file_url_reads_like_a_path(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))

    assert ResultsStore(f"file://{tmp_path}").read("demo", "trials").trial_id.tolist() == ["t1"]


def test_inventory_finds_damaged_parts_from_footers_without_reading_tables(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "running"), _trial("t2", "running")]))
    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))
    (tmp_path / "demo" / "results" / "epochs").mkdir()
    (tmp_path / "demo" / "results" / "epochs" / "part-1-x.parquet").write_bytes(b"not parquet at all")

    inventory = ResultsStore(tmp_path).inventory("demo").set_index("table")

    assert inventory.loc["trials", ["parts", "rows_written", "state"]].tolist() == [2, 3, "ok"]
    assert inventory.loc["epochs", "state"] == "corrupt" and "part-1-x.parquet" in inventory.loc["epochs", "problems"]
    assert inventory.loc["importances", "state"] == "missing"


def test_compaction_merges_parts_without_changing_what_readers_see(tmp_path, writer):
    for status in ("pending", "running", "completed"):
        writer.write("trials", pd.DataFrame([_trial("t1", status), _trial(f"other-{status}", "running")]))
    store = ResultsStore(tmp_path)
    before = store.read("demo", "trials").sort_values("trial_id").reset_index(drop=True)

    writer.compact("trials")
    writer.write("trials", pd.DataFrame([_trial("t1", "errored", error="late")]))  # written after: still wins

    after = ResultsStore(tmp_path).read("demo", "trials").sort_values("trial_id").reset_index(drop=True)
    assert len(list((tmp_path / "demo" / "results" / "trials").glob("part-*.parquet"))) == 2
    assert after.drop(columns="error").loc[after.trial_id != "t1"].equals(
        before.drop(columns="error").loc[before.trial_id != "t1"])
    assert after.set_index("trial_id").loc["t1", "status"] == "errored"


def test_compaction_never_shows_a_reader_fewer_rows(tmp_path, writer, monkeypatch):
    for i, status in enumerate(["pending", "running", "completed", "errored"]):
        writer.write("trials", pd.DataFrame([_trial(f"other{i}", "running"), _trial("t0", status)]))
    expected = ResultsStore(tmp_path).read("demo", "trials").sort_values("trial_id").reset_index(drop=True)
    seen = []

    class LookingFileSystem(pafs.LocalFileSystem):
        def delete_file(self, path):  # a reader between every step of the compaction
            seen.append(ResultsStore(tmp_path).read("demo", "trials").sort_values("trial_id").reset_index(drop=True))
            super().delete_file(path)

    monkeypatch.setattr(writer, "_fs", LookingFileSystem())
    merged = writer.compact("trials")
    seen.append(ResultsStore(tmp_path).read("demo", "trials").sort_values("trial_id").reset_index(drop=True))

    assert len(seen) == 5 and all(frame.equals(expected) for frame in seen)
    names = sorted(p.name for p in (tmp_path / "demo" / "results" / "trials").glob("part-*.parquet"))
    assert names == [merged.rsplit("/", 1)[1]]
    writer.write("trials", pd.DataFrame([_trial("t0", "completed")]))  # sorts after the merged part
    writer.compact("trials")  # and a compaction of a compaction still sorts after it
    assert ResultsStore(tmp_path).read("demo", "trials").set_index("trial_id").loc["t0", "status"] == "completed"


def test_a_part_and_its_folder_entry_are_on_disk_when_the_write_returns(tmp_path, writer, monkeypatch):
    import os
    import stat

    from heartbeatai.results import writer as writer_module

    synced = []
    fsync = os.fsync

    def recording(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        fsync(fd)

    monkeypatch.setattr(writer_module.os, "fsync", recording)
    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))
    assert synced == ["file", "dir"]  # the data before the rename, then the rename


def test_a_reader_that_lists_parts_a_compaction_then_deletes_lists_again(tmp_path, writer, monkeypatch):
    from heartbeatai.results import reader

    for i in range(3):
        writer.write("trials", pd.DataFrame([_trial(f"t{i}", "completed")]))
    read_table = reader.pq.read_table
    compacted = []

    def compaction_under_the_read(*args, **kwargs):
        if not compacted:
            compacted.append(None)  # pq is the writer's module too
            compacted[0] = writer.compact("trials")
        return read_table(*args, **kwargs)

    monkeypatch.setattr(reader.pq, "read_table", compaction_under_the_read)
    assert sorted(ResultsStore(tmp_path).read("demo", "trials")["trial_id"]) == ["t0", "t1", "t2"]
    assert compacted[0] is not None


@pytest.mark.parametrize("change, problem", [
    (lambda t: t.set_column(t.schema.get_field_index("status"), "status", pa.array([1], pa.int64())), "is int64"),
    (lambda t: t.append_column("bogus", pa.array([1.0])), "not in the trials table"),
    (lambda t: t.drop_columns(["status"]), "required column 'status' is missing"),
    (lambda t: t.set_column(t.schema.get_field_index("status"), "status", pa.array(["lost"])), "not one of"),
])
def test_a_readable_part_the_schema_does_not_allow_is_reported_as_damaged(tmp_path, writer, change, problem):
    import pyarrow.parquet as pq

    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))
    path = writer.write("trials", pd.DataFrame([_trial("t2", "completed")]))
    pq.write_table(change(pq.read_table(path)), path)
    frame = ResultsStore(tmp_path).read("demo", "trials")
    assert list(frame["trial_id"]) == ["t1"]
    assert len(frame.attrs["corrupt"]) == 1 and problem in frame.attrs["corrupt"][0]


def test_the_stored_schema_version_is_read_and_a_missing_or_damaged_file_reads_as_none(tmp_path, writer):
    store = ResultsStore(tmp_path)
    version_file = tmp_path / "demo" / "results" / schema.VERSION_FILE

    assert store.schema_version("demo") == schema.SCHEMA_VERSION
    version_file.write_text(json.dumps({"schema_version": 1, "tables": []}))
    assert store.schema_version("demo") == 1
    version_file.write_text("{not json")
    assert store.schema_version("demo") is None
    version_file.unlink()
    assert store.schema_version("demo") is None


def test_analysis_settings_come_from_the_study_config_beside_the_results(tmp_path, writer):
    store = ResultsStore(tmp_path)

    assert store.analysis_settings("demo") == {}
    (tmp_path / "demo" / "study.yaml").write_text("name: demo\nanalysis:\n  decision_probability: 0.9\n  rope: 0.02\n")
    assert store.analysis_settings("demo") == {"decision_probability": 0.9, "rope": 0.02}
    (tmp_path / "demo" / "study.yaml").write_text("analysis: [not, a, mapping]\n")
    assert store.analysis_settings("demo") == {}
    with pytest.raises(ValueError):
        store.analysis_settings("../etc")


def test_the_part_listing_names_every_finished_part_and_nothing_in_progress(tmp_path, writer):
    store = ResultsStore(tmp_path)
    assert store.parts("demo", "trials") == ()
    writer.write("trials", pd.DataFrame([_trial("t1", "running")]))
    writer.write("trials", pd.DataFrame([_trial("t1", "completed")]))
    (tmp_path / "demo" / "results" / "trials" / ".part-half-written.parquet.tmp").write_bytes(b"PAR1")

    on_disk = sorted(p for p in (tmp_path / "demo" / "results" / "trials").iterdir() if p.name.startswith("part-"))
    assert [(name, size) for name, _, size in store.parts("demo", "trials")] == \
        [(p.name, p.stat().st_size) for p in on_disk]


def test_a_file_beside_the_tables_is_written_whole_and_read_back(tmp_path, writer, monkeypatch):
    writer.write("trials", pd.DataFrame([_trial("t1", "running")]))
    store = ResultsStore(tmp_path)
    store.write_results_file("demo", "notes.json", '{"a": 1}')
    assert ResultsStore(tmp_path).read_results_file("demo", "notes.json") == '{"a": 1}'
    assert ResultsStore(tmp_path).read_results_file("demo", "absent.json") is None

    class NoRename:  # the filesystem fails between writing the temporary file and the rename
        def __init__(self, filesystem):
            self.filesystem = filesystem

        def __getattr__(self, name):
            return getattr(self.filesystem, name)

        def move(self, *_):
            raise OSError("disk full")

    monkeypatch.setattr(store, "_fs", NoRename(store._fs))
    with pytest.raises(OSError):
        store.write_results_file("demo", "notes.json", '{"a": 2}')
    assert ResultsStore(tmp_path).read_results_file("demo", "notes.json") == '{"a": 1}'


def test_the_study_summary_is_a_client_of_the_store_not_the_other_way_round():
    """reader.py imports no summary, and summary.py reaches no private part of the store."""
    import ast
    from pathlib import Path

    from heartbeatai.results import reader, summary

    reader_imports = {n.module for n in ast.walk(ast.parse(Path(reader.__file__).read_text()))
                      if isinstance(n, ast.ImportFrom)}
    assert "heartbeatai.results.summary" not in reader_imports
    private = [n.attr for n in ast.walk(ast.parse(Path(summary.__file__).read_text()))
               if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
               and not (isinstance(n.value, ast.Name) and n.value.id == "self")]  # its own state is its own
    assert private == []


def test_a_copied_study_reads_and_writes_under_its_folder_name(tmp_path, writer):
    import shutil

    writer.write("trials", pd.DataFrame([_trial("t1", "running")]))
    writer.write("ablation_tests", pd.DataFrame([dict(_ABLATION, diff=0.1)]))
    shutil.copytree(tmp_path / "demo", tmp_path / "demo-copy")
    copy = ResultsWriter(tmp_path / "demo-copy")

    # Rows come back under the folder's name, as the analysis hands them to the writer again.
    trials = ResultsStore(tmp_path).read("demo-copy", "trials")
    copy.write("trials", trials.assign(trial_id="t2"))
    copy.replace("ablation_tests", pd.DataFrame([dict(_ABLATION, study="demo-copy", diff=0.2)]),
                 where={"study": "demo-copy"})

    store = ResultsStore(tmp_path)
    assert sorted(store.read("demo-copy", "trials")["trial_id"]) == ["t1", "t2"]
    assert set(store.read("demo-copy", "trials")["study"]) == {"demo-copy"}
    assert list(store.read("demo-copy", "ablation_tests")["diff"]) == [0.2]  # replaced, not beside the old row
    assert store.status("demo-copy", "trials").corrupt == ()
    assert list(store.read("demo", "ablation_tests")["diff"]) == [0.1]  # the original is untouched
    with pytest.raises(ValueError, match="rows of study"):
        copy.write("trials", pd.DataFrame([{**_trial("t3", "running"), "study": "elsewhere"}]))


def test_a_part_of_another_study_in_a_folder_is_skipped_and_named(tmp_path, writer):
    writer.write("trials", pd.DataFrame([_trial("t1", "running")]))
    intruder = ResultsWriter(tmp_path / "other").write("trials", pd.DataFrame([_trial("t9", "completed")]))
    target = tmp_path / "demo" / "results" / "trials" / intruder.rsplit("/", 1)[1]
    (tmp_path / "other" / "results" / "trials" / target.name).rename(target)

    store = ResultsStore(tmp_path)
    trials = store.read("demo", "trials")

    assert list(trials["trial_id"]) == ["t1"]
    [problem] = store.status("demo", "trials").corrupt
    assert problem.startswith(f"{target.name}: rows of another study ('other'")
