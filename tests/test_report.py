"""`heartbeatai report`: every table and figure written, their numbers checked against the
store by independent computations, each figure's CSV against its table, LaTeX that holds
together, vector PDFs, and the robustness rules (running studies, damaged tables, copies)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from heartbeatai.report import formats
from heartbeatai.report.build import ReportError, write_report
from heartbeatai.report.figures import FIGURES, nemenyi_critical_difference
from heartbeatai.report.tables import ALL_DOMAINS, TABLES, min_rank_test_p
from heartbeatai.results import open_study
from heartbeatai.testing.fake_store import make_store


def _csv(path: Path) -> pd.DataFrame:
    text = path.read_text()
    return pd.read_csv(io.StringIO(text), comment=None, skiprows=1 if text.startswith("#") else 0)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    study = Path(make_store(root, "paper", n_trials=12, classes=8, seeds=3, records_per_fold=60))
    # The prepared dataset's record table the run files point at, with drawn demographics.
    ids = sorted(set(open_study(study).predictions(split="test")["record_id"]))
    rng = np.random.default_rng(1)
    prepared = study / "prepared" / "demo"
    prepared.mkdir(parents=True)
    pd.DataFrame({"record_id": ids, "age": rng.uniform(20, 95, len(ids)).round(),
                  "sex": rng.choice(["female", "male", None], len(ids), p=[0.45, 0.45, 0.1])}
                 ).to_parquet(prepared / "records.parquet")
    return study


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    lines = []
    result = write_report(study, out, command="heartbeatai report paper --out report", progress=lines.append)
    assert result.skipped == {} and lines == []
    return out


def test_every_table_in_every_format_every_figure_with_its_data_the_page_and_readme(report):
    for key in TABLES:
        for name in ("csv", "tex", "md"):
            assert (report / f"{key}.{name}").stat().st_size > 0, f"{key}.{name}"
    for key in FIGURES:
        for name in ("pdf", "png", "csv"):
            assert (report / f"{key}.{name}").stat().st_size > 0, f"{key}.{name}"
    page = (report / "report.html").read_text()
    assert all(f"id='{key}'" in page for key in FIGURES) and all(f'id="{key}"' in page for key in TABLES)
    assert "src='http" not in page and "<link" not in page  # self-contained
    readme = (report / "README.md").read_text()
    for key in (*TABLES, *FIGURES):
        assert key in readme
    assert "heartbeatai report paper --out report" in readme and "commit:" in readme


def test_main_results_are_the_seed_means_of_the_stored_figures(study, report):
    t2 = _csv(report / "t2_main_results.csv")
    metrics = open_study(study).fold_metrics(split="test", label_set="noisy", selection="val")
    metrics = metrics.assign(domain=metrics["fold_id"].str.split(":").str[1])
    lodo = metrics[metrics["protocol"] == "lodo"]
    expected = lodo.groupby(["domain", "arm", "metric"])["value"].mean()
    checked = 0
    for _, row in t2[(t2["protocol"] == "lodo") & (t2["domain"] != ALL_DOMAINS)].iterrows():
        for metric in ("macro_auroc", "macro_f1"):
            assert row[metric] == pytest.approx(expected[(row["domain"], row["arm"], metric)], abs=1e-6)
            if np.isfinite(row[f"{metric}_lo"]):
                assert 0 <= row[f"{metric}_lo"] <= row[metric] <= row[f"{metric}_hi"] <= 1
            checked += 1
    assert checked >= 2 * 4 * 8
    # Across domains: the pooled figure lies within the domains' range, its interval around it.
    pooled = t2[(t2["domain"] == ALL_DOMAINS) & (t2["arm"] == "full") & (t2["protocol"] == "lodo")].iloc[0]
    per_domain = expected.xs("full", level="arm").xs("macro_auroc", level="metric")
    assert per_domain.min() - 1e-9 <= pooled["macro_auroc"] <= per_domain.max() + 1e-9
    assert pooled["macro_auroc_lo"] < pooled["macro_auroc"] < pooled["macro_auroc_hi"]


def test_dataset_card_counts_and_class_table_positives_match_the_store(study, report):
    card = open_study(study).table("dataset_card")
    t1b = _csv(report / "t1b_dataset_classes.csv").set_index("class")
    for _, row in card.iterrows():
        assert t1b.loc[row["class"], f"count_{row['domain']}"] == row["count"]
    assert (t1b["count_all"] == card.groupby("class")["count"].sum().reindex(t1b.index)).all()
    assert (t1b["count_all"].diff().dropna() >= 0).all()  # rarest first
    shown = (report / "t1b_dataset_classes.md").read_text()
    if (card["count"] == 0).any():
        assert "absent" in shown
    t3 = _csv(report / "t3_class_domain.csv")
    classes = open_study(study).class_metrics(arm="full", protocol="lodo", split="test", label_set="noisy",
                                              selection="val")
    classes = classes[classes["present"]]
    first = classes.sort_values("seed").drop_duplicates(["fold_id", "class"])
    first = first.assign(domain=first["fold_id"].str.split(":").str[1]).set_index(["domain", "class"])
    lodo = t3[t3["protocol"] == "lodo"]
    assert len(lodo) == len(first)
    for _, row in lodo.iterrows():
        assert row["positives"] == first.loc[(row["domain"], row["class"]), "positives"]


def test_subgroup_figures_are_the_seed_means_of_macro_auroc_within_the_subgroup(study, report):
    from sklearn.metrics import roc_auc_score

    t3s = _csv(report / "t3s_subgroups.csv")
    assert set(t3s["subgroup"]) == {"sex female", "sex male", "age <40", "age 40-59", "age 60-79", "age >=80"}
    records = pd.read_parquet(study / "prepared" / "demo" / "records.parquet")
    row = t3s[t3s["subgroup"] == "sex female"].iloc[0]
    members = set(records.loc[records["sex"] == "female", "record_id"])
    predictions = open_study(study).predictions(arm="full", split="test", protocol="lodo", selection="val",
                                                fold_id=f"lodo:{row['domain']}")
    values = []
    for _, run in predictions.groupby("seed"):
        run = run[run["record_id"].isin(members)].dropna(axis=1, how="all")
        aurocs = [roc_auc_score(run[c], run[f"p_{c[2:]}"]) for c in run.columns
                  if c.startswith("y_") and 0 < run[c].sum() < len(run)]
        values.append(np.mean(aurocs))
    assert row["n_records"] == len(run)
    assert row["macro_auroc"] == pytest.approx(np.mean(values), rel=1e-8)
    assert row["macro_auroc_lo"] <= row["macro_auroc"] <= row["macro_auroc_hi"]


def test_arm_tests_carry_the_store_rows_and_the_smallest_rank_test_p(study, report):
    t4 = _csv(report / "t4_arm_tests.csv")
    stored = open_study(study).ablation_tests()
    merged = t4.merge(stored, on=["protocol", "metric", "arm", "scope", "fold_id"], suffixes=("", "_store"))
    assert len(merged) == len(stored) == len(t4)
    assert np.allclose(merged["diff"], merged["diff_store"], equal_nan=True, rtol=1e-5)
    assert np.allclose(merged["p_holm"], merged["p_holm_store"], equal_nan=True, rtol=1e-5)
    # Independent count: of the 2^k sign patterns over k domains, the two all-agreeing ones.
    for k in (3, 4, 6):
        patterns = [[(i >> j) & 1 for j in range(k)] for i in range(2 ** k)]
        extreme = sum(1 for p in patterns if sum(p) in (0, k))
        assert min_rank_test_p(k) == pytest.approx(extreme / 2 ** k)
    assert nemenyi_critical_difference(8, 4) == pytest.approx(5.25, abs=0.01)  # issue 25's figure


def _ece(q: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Classwise ECE, written out bin by bin."""
    values = []
    for c in range(q.shape[1]):
        total = 0.0
        for b in range(bins):
            low, high = b / bins, (b + 1) / bins
            inside = (q[:, c] >= low) & ((q[:, c] < high) if b < bins - 1 else (q[:, c] <= high))
            if inside.any():
                total += inside.sum() / len(q) * abs(q[inside, c].mean() - y[inside, c].mean())
        values.append(total)
    return float(np.mean(values))


def test_calibration_error_matches_a_written_out_computation(study, report):
    t6 = _csv(report / "t6_calibration.csv")
    predictions = open_study(study).predictions(arm="full", split="test", protocol="lodo", selection="val")
    row = t6[t6["protocol"] == "lodo"].iloc[0]
    runs = predictions[predictions["fold_id"] == f"lodo:{row['domain']}"]
    values = []
    for _, run in runs.groupby("seed"):
        run = run.dropna(axis=1, how="all")
        classes = [c[2:] for c in run.columns if c.startswith("p_") and f"y_{c[2:]}" in run.columns]
        y = run[[f"y_{c}" for c in classes]].to_numpy(float)
        present = y.sum(axis=0) > 0
        values.append(_ece(run[[f"p_{c}" for c in classes]].to_numpy(float)[:, present], y[:, present]))
    assert row["ece"] == pytest.approx(np.mean(values), rel=1e-8)
    assert row["ece_lo"] <= row["ece"] <= row["ece_hi"]


def test_cost_table_sums_the_trials_wall_time(study, report):
    t7b = _csv(report / "t7b_cost.csv")
    trials = open_study(study).trials()
    search = trials[(trials["arm"] == "search") & (trials["protocol"] == "lodo")]
    row = t7b[(t7b["protocol"] == "lodo") & (t7b["stage"] == "search")].iloc[0]
    assert row["trials"] == len(search)
    assert row["trial_hours"] == pytest.approx(search["wall_time_s"].sum() / 3600, rel=1e-5)
    assert t7b.iloc[-1]["trials"] == len(trials)


def test_each_figure_draws_the_numbers_of_its_table(report):
    t4 = _csv(report / "t4_arm_tests.csv")
    forest = _csv(report / "f1_forest.csv")
    across = forest[forest["scope"] == "across"].merge(
        t4[(t4["scope"] == "across") & (t4["protocol"] == "lodo")], on="arm", suffixes=("", "_t4"))
    across = across[across["metric"] == "macro_auroc"]
    assert len(across) and np.allclose(across["diff"], across["diff_t4"], rtol=1e-5)

    t5 = _csv(report / "t5_degradation.csv").set_index(["class", "domain"])
    heat = _csv(report / "f2_class_domain_heatmap.csv").set_index(["class", "domain"])
    assert np.allclose(heat["total"], t5.loc[heat.index, "total"], rtol=1e-5)
    contrast = _csv(report / "f4_rarity_contrast.csv").set_index(["class", "domain"])
    assert np.allclose(contrast["drop"], t5.loc[contrast.index, "f1_reference"] - t5.loc[contrast.index, "f1_lodo"],
                       rtol=1e-5, atol=1e-9)

    # Average ranks from T2's per-domain figures, ranked here with pandas.
    t2 = _csv(report / "t2_main_results.csv")
    wide = t2[(t2["protocol"] == "lodo") & (t2["domain"] != ALL_DOMAINS)].pivot(
        index="domain", columns="arm", values="macro_auroc")
    ranks = (-wide).rank(axis=1).mean()
    drawn = _csv(report / "f7_average_ranks.csv").set_index("arm")["average_rank"]
    assert np.allclose(drawn, ranks.reindex(drawn.index))
    assert bool(_csv(report / "f7_average_ranks.csv")["descriptive"].iloc[0])  # 4 domains: no test possible

    # The reliability bins hold every probability of arm full's LODO test records once.
    bins = _csv(report / "f5_reliability.csv")
    t6 = _csv(report / "t6_calibration.csv")
    lodo = bins[bins["protocol"] == "lodo"].groupby("domain")["n"].sum()
    records = t6[t6["protocol"] == "lodo"].set_index("domain")
    assert (lodo.reindex(records.index) % records["n_records"] == 0).all()


def test_latex_tables_hold_together(report, tmp_path):
    for key in TABLES:
        tex = (report / f"{key}.tex").read_text()
        environment = "longtable" if r"\begin{longtable}" in tex else "tabular"
        assert tex.count(rf"\begin{{{environment}}}") == tex.count(rf"\end{{{environment}}}") == 1
        if environment == "tabular":
            assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
        assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
        columns = len(re.search(rf"\\begin\{{{environment}\}}\{{(l+)\}}", tex).group(1))
        body = tex[tex.index(r"\toprule"):tex.index(rf"\end{{{environment}}}")]
        rows = [line for line in body.splitlines() if line.endswith(r"\\") and not line.startswith(r"\caption")]
        assert len(rows) >= len(_csv(report / f"{key}.csv")), key
        assert all(len(re.findall(r"(?<!\\)&", row)) == columns - 1 for row in rows), key
        # No unescaped special character left in the text.
        text = re.sub(r"\\[a-zA-Z]+(\{[^{}]*\})?|\\[&%$#_{}]|\$\\(pm|geq|leq)\$", "", body)
        assert not re.search(r"(?<!\\)[%#_^]", text), key
    engine = shutil.which("pdflatex")
    if engine is None:
        return  # the structural checks above stand in where no TeX engine is installed
    document = tmp_path / "all.tex"
    document.write_text("\\documentclass{article}\\usepackage{booktabs,longtable}"
                        "\\begin{document}" + "".join((report / f"{k}.tex").read_text() for k in TABLES)
                        + "\\end{document}")
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", document.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_figures_are_vector_pdfs_and_300_dpi_pngs(report):
    from PIL import Image

    for key in FIGURES:
        pdf = (report / f"{key}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 2000
        assert b"/Subtype /Image" not in pdf, f"{key}.pdf embeds a raster image"
        with Image.open(report / f"{key}.png") as png:
            assert round(png.info["dpi"][0]) == 300


def test_markdown_cells_say_why_an_interval_is_missing(report):
    t3 = (report / "t3_class_domain.md").read_text()
    t3_data = _csv(report / "t3_class_domain.csv")
    if (~t3_data["interval_reliable"]).any():
        assert re.search(r"\d\.\d{3} \(\d+ pos\., no interval\)", t3)
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", t3)


def test_a_running_study_is_refused_unless_partial_and_then_says_so(tmp_path):
    study = make_store(tmp_path / "store", "running", n_folds=2, n_trials=6, classes=6, seeds=2, in_progress=True,
                       records_per_fold=40)
    with pytest.raises(ReportError, match="still running.*--partial"):
        write_report(study, tmp_path / "refused", progress=lambda line: None)
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "partial"
    result = write_report(study, out, partial=True, formats_wanted=("csv", "md"), progress=lambda line: None)
    assert result.written
    for name in result.written:
        if name.endswith(".md") and name != "README.md":
            assert formats.PARTIAL_NOTE in (out / name).read_text()
        if name.endswith(".csv"):
            assert (out / name).read_text().startswith(f"# {formats.PARTIAL_NOTE}")
    readme = (out / "README.md").read_text()
    assert "PARTIAL" in readme
    assert "`t3s_subgroups`: no demographics" in readme  # this store has no prepared dataset beside it


def test_a_damaged_table_is_one_line_and_the_rest_is_written_for_a_renamed_copy(study, tmp_path):
    copy = tmp_path / "store" / "paper-copy"
    shutil.copytree(study, copy)
    shutil.rmtree(copy / "results" / "degradation")
    part = next((copy / "results" / "rarity_contrast").glob("part-*.parquet"))
    part.write_bytes(b"not parquet")
    lines = []
    result = write_report(copy, tmp_path / "out", formats_wanted=("md",), progress=lines.append)
    assert set(result.skipped) == {"t5_degradation", "t5b_rarity_contrast", "f2_class_domain_heatmap",
                                   "f3_degradation_parts", "f4_rarity_contrast"}
    assert all(line.startswith("report: ") and "\n" not in line for line in lines)
    assert any("rarity_contrast" in line and "damaged" in line for line in lines)
    assert (tmp_path / "out" / "t2_main_results.md").exists() and (tmp_path / "out" / "f1_forest.pdf").exists()
    readme = (tmp_path / "out" / "README.md").read_text()
    assert readme.startswith("# Report of study `paper-copy`") and "## Not written" in readme


def test_report_command_prints_one_line_for_a_folder_that_is_no_study(tmp_path):
    done = subprocess.run([sys.executable, "-m", "heartbeatai", "report", str(tmp_path), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "not a study directory" in (done.stderr + done.stdout)


def test_the_report_imports_neither_torch_nor_ray():
    code = ("import sys, heartbeatai.report.build, heartbeatai.report.figures, heartbeatai.report.report_cli\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert found.stdout.strip().splitlines()[-1] == "[]"


def test_the_dashboard_copies_a_table_as_latex_as_the_report_writes_it(study, report):
    from heartbeatai.dashboard.views import Views
    from heartbeatai.results import ResultsStore

    views = Views(ResultsStore(str(study.parent)))
    assert views.report_latex(study.name, "t2_main_results") == (report / "t2_main_results.tex").read_text()


@pytest.mark.slow  # builds the whole report a second time (12 s); the report itself is checked above
def test_the_dashboard_builds_the_report_archive(study):
    import base64
    import zipfile

    from heartbeatai.dashboard.views import Views
    from heartbeatai.results import ResultsStore

    download = Views(ResultsStore(str(study.parent))).report_archive(study.name)
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(download["content"]))) as archive:
        names = set(archive.namelist())
    assert download["filename"] == "paper-report.zip"
    assert {f"paper-report/{key}.tex" for key in TABLES} <= names
    assert {"paper-report/report.html", "paper-report/README.md", "paper-report/f1_forest.pdf"} <= names


def test_a_difference_interval_is_clipped_to_what_a_difference_of_the_metric_can_be():
    from heartbeatai.report.tables import difference_cell

    assert difference_cell(0.1, -1.8, 2.1, "f1") == "+0.100 [-1.000, +1.000]"  # F1 in [0, 1]: differences in [-1, 1]
    assert difference_cell(0.1, -0.2, 0.4, "macro_auroc") == "+0.100 [-0.200, +0.400]"
    assert difference_cell(0.1, -5.0, 3.0, "challenge_score") == "+0.100 [-5.000, +3.000]"  # no floor: unclipped
