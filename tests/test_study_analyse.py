"""`heartbeatai study analyse` recomputes a finished study's analysis tables from the store
alone, identically for the same seed, and with another bootstrap size on request."""

from __future__ import annotations

import pandas as pd
import pytest

from heartbeatai.cli import main as cli_main
from heartbeatai.results import ResultsStore
from heartbeatai.study.study_run import start_study
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset

TABLES = ("class_metrics", "fold_metrics", "ablation_tests", "best_configs")
SAID: list[str] = []  # the finished study's progress lines


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyse")
    data = write_planted_dataset(tmp / "data", records_per_domain=24)
    config = tiny_study(data, tmp / "runs", name="analysed", arms=["full", "no-se", "prevalence"],
                        seeds=[1, 2, 3], analysis={"bootstrap": 50})
    start_study(config, progress=SAID.append, stage_runner=PlantedStageRunner(tmp / "fake"))
    return tmp / "runs"


def _tables(storage) -> dict[str, pd.DataFrame]:
    store = ResultsStore(str(storage))
    return {name: _sorted(store.read("analysed", name)) for name in TABLES}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:8]), kind="stable").reset_index(drop=True).sort_index(axis=1)


def test_analyse_reproduces_the_tables_the_run_wrote(finished, capsys):
    before = _tables(finished)
    assert not before["ablation_tests"].empty and before["ablation_tests"]["p_value"].notna().any()
    assert cli_main(["study", "analyse", str(finished / "analysed")]) == 0
    assert "analysis written" in capsys.readouterr().out
    after = _tables(finished)
    for name in TABLES:
        pd.testing.assert_frame_equal(after[name], before[name], check_dtype=False, obj=name)


def test_another_bootstrap_size_changes_the_intervals_not_the_estimates(finished):
    before = _tables(finished)["ablation_tests"]
    assert cli_main(["study", "analyse", str(finished / "analysed"), "--bootstrap", "30"]) == 0
    after = _tables(finished)["ablation_tests"]
    pd.testing.assert_series_equal(after["diff"], before["diff"])
    folds = after["scope"] == "fold"
    assert not after.loc[folds, "diff_lo"].equals(before.loc[folds, "diff_lo"])
    assert cli_main(["study", "analyse", str(finished / "analysed")]) == 0  # back to the study's own


def test_a_finished_study_ends_with_each_arms_decision_and_its_largest_differences(finished):
    tests = ResultsStore(str(finished)).read("analysed", "ablation_tests")
    tests = tests[(tests["metric"] == "macro_auroc") & ~tests["reference"] & (tests["protocol"] == "lodo")]
    ending = SAID[SAID.index(next(line for line in SAID if line.startswith("lodo: each arm minus full"))):]
    assert ending[-3].startswith("study analysed finished")
    across = tests[tests["scope"] == "across"]
    assert len(across) >= 1
    for _, row in across.iterrows():  # one line per arm, with the table's estimate, posterior and decision
        line = next(line for line in ending if line.split()[0] == row["arm"])
        assert f"{row['diff']:+.3f}" in line and f"P(better) {row['p_better']:.2f}" in line
        assert line.endswith(f"-> {row['decision']}")
    folds = tests[tests["scope"] == "fold"]
    biggest = folds.loc[folds["diff"].abs().idxmax()]
    assert any(line.strip().startswith(f"{biggest['arm']} on {biggest['fold_id']}: {biggest['diff']:+.3f}")
               for line in ending)
    assert len(ending) <= 25  # one screen


def test_analyse_refuses_a_folder_that_is_not_a_study(tmp_path, capsys):
    assert cli_main(["study", "analyse", str(tmp_path)]) == 2
    assert "not a study directory" in capsys.readouterr().err


def test_a_copied_study_is_analysed_reported_and_exported_under_its_folder_name(finished, tmp_path, capsys):
    import shutil

    copy = tmp_path / "elsewhere" / "renamed"  # away from the original: nothing can read it by its old name
    shutil.copytree(finished / "analysed", copy)
    before = _tables(finished)

    assert cli_main(["study", "analyse", str(copy)]) == 0
    store = ResultsStore(str(copy.parent))
    for name in TABLES:  # the same figures (the consensus' run file names the folder and its data path)
        got = _sorted(store.read("renamed", name)).drop(columns="run_file", errors="ignore")
        assert set(got["study"]) == {"renamed"}, name
        expected = before[name].assign(study="renamed").drop(columns="run_file", errors="ignore")
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=name)
    capsys.readouterr()
    assert cli_main(["study", "status", str(copy)]) == 0
    status = capsys.readouterr().out
    assert status.startswith("study renamed") and "damaged" not in status
    exported = cli_main(["export", str(copy), "--out", str(tmp_path / "export")])
    assert exported == 0
    runs = sorted((tmp_path / "export").glob("*.yaml"))
    assert runs and all("  study: renamed\n" in path.read_text() for path in runs)


def test_resuming_a_renamed_study_is_refused_before_it_touches_anything(finished, tmp_path, capsys):
    import shutil

    copy = tmp_path / "renamed"
    shutil.copytree(finished / "analysed", copy)
    before = sorted(p.name for p in copy.rglob("*"))

    assert cli_main(["study", "resume", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds study 'analysed', copied or renamed" in err
    assert sorted(p.name for p in copy.rglob("*")) == before


def test_rows_of_two_studies_in_one_folder_are_refused_with_one_line(finished, tmp_path, capsys):
    import shutil

    from heartbeatai.results import ResultsWriter

    mixed = tmp_path / "mixed"
    shutil.copytree(finished / "analysed", mixed)
    # A part of another study dropped into this one's folder.
    rows = ResultsStore(str(finished)).read("analysed", "class_metrics").drop(columns="study")
    part = ResultsWriter(tmp_path / "other").write("class_metrics", rows)
    shutil.move(part, mixed / "results" / "class_metrics")

    assert cli_main(["study", "analyse", str(mixed)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another study ('other'" in err and "Traceback" not in err
    assert cli_main(["study", "status", str(mixed)]) == 1
    assert "rows of another study ('other'" in capsys.readouterr().out


def test_a_fold_metric_the_analysis_no_longer_writes_does_not_survive_from_an_earlier_one(finished):
    """A row an earlier analysis wrote and this one does not (macro AUPRC of a run whose test set
    has no class of 10 positives; here a row of no tested run at all) is gone after re-analysis:
    the test rows are replaced, not appended to."""
    from heartbeatai.results import ResultsWriter

    store = ResultsStore(str(finished))
    fold_metrics = store.read("analysed", "fold_metrics")
    stale = fold_metrics[fold_metrics["metric"] == "macro_f1"].iloc[[0]].assign(
        metric="macro_auprc", value=0.123, trial_id="an-earlier-analysis")
    ResultsWriter(finished / "analysed").write("fold_metrics", stale)
    assert (store.read("analysed", "fold_metrics")["value"] == 0.123).any()
    assert cli_main(["study", "analyse", str(finished / "analysed")]) == 0
    after = store.read("analysed", "fold_metrics")
    assert not (after["value"] == 0.123).any() and len(after) == len(fold_metrics)


def test_a_notebook_opens_the_study_in_one_line_and_reads_the_store_s_rows(finished):
    from heartbeatai.results import open_study

    s = open_study(finished / "analysed")
    store = ResultsStore(str(finished))
    full = s.fold_metrics(arm="full", protocol="lodo")
    expected = store.read("analysed", "fold_metrics")
    expected = expected[(expected["arm"] == "full") & (expected["protocol"] == "lodo")]
    assert len(full) == len(expected) > 0 and set(full["arm"]) == {"full"}
    pd.testing.assert_frame_equal(_sorted(full), _sorted(expected.reset_index(drop=True)), check_dtype=False)
    assert len(s.trials()) == len(store.read("analysed", "trials"))
    assert set(s.ablation_tests(scope="across")["scope"]) == {"across"}
    fold = s.trials(protocol="lodo")["fold_id"].iloc[0]
    run = s.best_config(fold)
    assert run.fold_id == fold and run.trial is not None
    with pytest.raises(KeyError, match="no val selection"):
        s.best_config("lodo:nowhere")


def test_the_notebook_api_imports_neither_torch_nor_ray():
    import subprocess
    import sys

    code = ("import sys, heartbeatai.results as r; r.open_study; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
