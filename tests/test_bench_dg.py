"""`python -m benchmarks dg`: its cost table covers whatever the registry holds, and its study
part reads the algorithm rows of ablation_tests (benchmarks/bench_dg.py)."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from benchmarks import bench_dg
from heartbeatai.training.algorithms import ALGORITHMS


@pytest.mark.slow  # trains every algorithm for two epochs: 5-30 s on shared cores
def test_the_cost_table_has_a_row_per_registered_algorithm(capsys):
    args = argparse.Namespace(rounds=1, batches=1, batch=4, length=100, threads=1, device="cpu")
    assert bench_dg.cost_table(args) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in ALGORITHMS}
    assert list(rows) == ["erm", *[k for k in ALGORITHMS if k != "erm"]]
    assert rows["erm"].count("1.00x") == 2  # ERM is the reference of both ratios


def test_the_study_part_prints_each_algorithm_against_erm_and_nothing_else():
    row = {"protocol": "lodo", "metric": "macro_auroc", "diff": 0.01, "diff_lo": -0.02, "diff_hi": 0.04,
           "decision": "undecided", "family": "algorithms: confirmatory"}
    tests = pd.DataFrame([
        {**row, "arm": "algorithm-vrex", "scope": "across", "fold_id": "all"},
        {**row, "arm": "algorithm-vrex", "scope": "fold", "fold_id": "lodo:cpsc", "family": "algorithms: exploratory"},
        {**row, "arm": "no-se", "scope": "across", "fold_id": "all", "family": "confirmatory"},
        {**row, "arm": "algorithm-vrex", "scope": "across", "fold_id": "all", "metric": "brier"},
    ])
    lines = bench_dg.comparison_lines(tests)
    assert len(lines) == 2 and lines[0].startswith("vrex") and "across domains" in lines[0]
    assert "lodo:cpsc" in lines[1] and "+0.0100 [-0.0200, +0.0400]" in lines[1]


def test_the_quick_zoo_is_the_shipped_config_made_small(tmp_path):
    config = bench_dg.zoo_config(str(tmp_path), quick=True)
    full = bench_dg.zoo_config(str(tmp_path), quick=False)
    assert config.algorithms == full.algorithms and config.search.space == full.search.space
    assert config.trial.optim.epochs < full.trial.optim.epochs and config.storage == str(tmp_path)
