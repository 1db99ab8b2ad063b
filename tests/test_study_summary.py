"""The per-study summary behind the studies list (results/summary.py): written from the
store's tables, rebuilt when missing, stale or damaged, and the only thing the studies
list reads of any study but the chosen one."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from heartbeatai.dashboard.layout import STUDIES_PAGE_SIZE
from heartbeatai.dashboard.views.base import STUDY_CHOICES
from heartbeatai.dashboard.views import Views
from heartbeatai.results import ResultsStore, ResultsWriter, schema, summary as summary_module, write_study_summary
from heartbeatai.results.summary import SUMMARY_FILE, StudySummaries
from heartbeatai.testing.fake_store import make_many_studies
from store_cache import store_copy

PAGE = STUDIES_PAGE_SIZE
SMALL = dict(n_folds=2, n_trials=12, classes=6, seeds=1, records_per_fold=6, record_views_per_fold=1)


def _file(root, study="demo"):
    return root / study / "results" / SUMMARY_FILE


def test_the_summary_counts_what_the_tables_hold(tmp_path):
    study_dir = store_copy(tmp_path, in_progress=True, **SMALL)
    written = write_study_summary(study_dir)

    progress = ResultsStore(tmp_path).progress("demo")
    assert json.loads(_file(tmp_path).read_text()) == written
    assert written["trials"] == {s: int(progress[s].sum()) for s in (*schema.TRIAL_STATUSES, "total")}
    assert written["folds"] == progress["fold_id"].nunique() and written["state"] == "running"
    assert written["damaged_tables"] == [] and written["study"] == "demo"


def test_a_missing_summary_is_rebuilt_on_first_read_and_written_back(tmp_path, monkeypatch):
    store_copy(tmp_path, **SMALL)  # an older store: no summary
    computed = []
    real = summary_module.compute_summary
    monkeypatch.setattr(summary_module, "compute_summary", lambda store, study: computed.append(study) or real(store, study))

    [first] = StudySummaries(ResultsStore(tmp_path)).read()
    assert computed == ["demo"] and _file(tmp_path).is_file() and first["state"] == "finished"
    [again] = StudySummaries(ResultsStore(tmp_path)).read()  # a new reader: from the file
    assert again == first and computed == ["demo"]


def test_a_stale_summary_is_rebuilt_when_the_study_writes_trials(tmp_path):
    study_dir = store_copy(tmp_path, **SMALL)
    before = write_study_summary(study_dir)
    store = ResultsStore(tmp_path)
    summaries = StudySummaries(store)
    assert summaries.read() == [before]

    trials = store.read("demo", "trials").head(1).assign(trial_id="extra", status="running")
    ResultsWriter(study_dir).write("trials", trials)

    [after] = summaries.read()
    assert after["trials"]["running"] == before["trials"]["running"] + 1 and after["state"] == "running"
    assert json.loads(_file(tmp_path).read_text())["trials_key"] == after["trials_key"] != before["trials_key"]


@pytest.mark.parametrize("damage", ["not json", "other version", "other study", "wrong types", "huge"])
def test_a_damaged_summary_is_rebuilt_never_trusted(tmp_path, damage):
    study_dir = store_copy(tmp_path, **SMALL)
    good = write_study_summary(study_dir)
    text = {"not json": "{half", "other version": json.dumps({**good, "summary_version": 99}),
            "other study": json.dumps({**good, "study": "other"}),
            "wrong types": json.dumps({**good, "trials": {"total": "many"}}),
            "huge": json.dumps({**good, "pad": "x" * 200_000})}[damage]
    _file(tmp_path).write_text(text)
    [read] = StudySummaries(ResultsStore(tmp_path)).read()
    assert {k: v for k, v in read.items() if k != "written_at"} == {k: v for k, v in good.items() if k != "written_at"}


def test_a_read_only_store_serves_rebuilt_summaries_from_memory(tmp_path, monkeypatch):
    store_copy(tmp_path, **SMALL)

    def refuse(*_args):
        raise PermissionError("read-only")

    monkeypatch.setattr(summary_module, "_write", refuse)
    [read] = StudySummaries(ResultsStore(tmp_path)).read()
    assert read["study"] == "demo" and not _file(tmp_path).exists()


def test_a_damaged_table_is_named_in_the_summary(tmp_path):
    study_dir = store_copy(tmp_path, **SMALL)
    part = next((tmp_path / "demo" / "results" / "degradation").glob("part-*.parquet"))
    part.write_bytes(b"not parquet")
    assert write_study_summary(study_dir)["damaged_tables"] == ["degradation"]


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    return root, make_many_studies(root, 300, **SMALL)


def test_the_first_studies_view_of_300_studies_reads_one_page_of_summaries(many, monkeypatch):
    root, names = many
    store = ResultsStore(root)
    read_tables, read_summaries = set(), []
    for method in ("_read_parts", "_read_footers"):
        real = getattr(ResultsStore, method)

        def spy(self, study, table, *args, _real=real):
            read_tables.add(study)
            return _real(self, study, table, *args)

        monkeypatch.setattr(ResultsStore, method, spy)
    real_summary = summary_module.summary_or_rebuild
    monkeypatch.setattr(summary_module, "summary_or_rebuild",
                        lambda store, study, cache=None: read_summaries.append(study) or real_summary(store, study, cache))
    monkeypatch.setattr(summary_module, "compute_summary", lambda *_: pytest.fail("a summary was recomputed"))
    views = Views(store)

    view, first = views.studies(names[7]), views.studies_page(0, None)

    assert read_tables == {names[7]}  # the chosen study's own figures and table health, nothing else
    assert read_summaries == names[:PAGE] == [row["study"] for row in first.rows]
    assert first.page_count == 15 and view.status == []
    last = views.studies_page(99, None)  # past the end: the last page
    assert [row["study"] for row in last.rows] == names[-PAGE:]
    assert len(read_summaries) == 2 * PAGE


def test_the_studies_list_finds_a_study_by_part_of_its_name(many):
    root, names = many
    views = Views(ResultsStore(root))

    found = views.studies_page(0, "STUDY-0029")

    assert [row["study"] for row in found.rows] == names[290:300] and found.page_count == 1
    assert views.studies_page(0, "no such study") == ([], 1)


def test_an_older_root_of_many_studies_gets_its_summaries_once(tmp_path):
    names = make_many_studies(tmp_path, 20, summaries=False, **SMALL)
    assert not any(_file(tmp_path, n).exists() for n in names)
    rows = Views(ResultsStore(tmp_path)).studies_page(0, None).rows
    assert len(rows) == 20 and all(_file(tmp_path, n).exists() for n in names)
    assert pd.DataFrame(rows)["state"].eq("finished").all()


def test_the_study_menu_carries_a_few_names_and_finds_the_others_as_the_user_types(many):
    from heartbeatai.dashboard.app import create_app

    root, names = many
    app = create_app(str(root), warm=False)
    layout = json.dumps(app.server.test_client().get("/_dash-layout").get_json())
    views = Views(ResultsStore(root))

    assert names[STUDY_CHOICES - 1] in layout and names[STUDY_CHOICES] not in layout
    assert views.study_choices("00299", names[0]) == [names[299], names[0]]  # typed, and the chosen one kept
    assert views.study_choices(None, names[250]) == [*names[:STUDY_CHOICES], names[250]]
    refresh = next(o for o in app.callback_map if "live-badge" in o)
    assert "study.options" not in refresh  # the refresh never resends the names
