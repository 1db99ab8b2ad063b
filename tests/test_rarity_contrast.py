"""The rarity contrast (analysis/rarity_contrast.py): the LODO drop on the rarest third of
class x domain cells minus the drop on the commonest third, from the degradation split's
paired bootstrap. Identical models give exactly zero; a drop planted on the rare class
alone is found with an interval above zero; the thirds follow the training prevalence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heartbeatai.analysis.rarity_contrast import ContrastCell, rarity_contrast_rows
from heartbeatai.results.schema import table
from test_degradation import CLASSES, PREVALENCE, _domain, _scores, _Study


def _cells(study: _Study, **kwargs) -> list[ContrastCell]:
    cells: list[ContrastCell] = []
    study.rows(cells=cells, **kwargs)
    return cells


def test_identical_models_give_a_zero_contrast_with_a_zero_interval():
    rng = np.random.default_rng(0)
    ids, y = _domain(rng)
    val_y = rng.random((300, 3)) < PREVALENCE
    scores, val_scores = _scores(rng, y), _scores(rng, val_y)
    study = _Study()
    study.add("lodo:alpha", ids, y, scores, val_y, val_scores)
    study.add("reference:alpha:0", ids, y, scores, val_y, val_scores)
    rows = rarity_contrast_rows(_cells(study), "s")
    row = rows[rows["label_set"] == "noisy"].iloc[0]
    assert row["n_cells"] == 3 and row["n_rare"] == row["n_common"] == 1
    assert row["contrast"] == row["contrast_lo"] == row["contrast_hi"] == 0.0
    assert row["f1_reference_macro"] == row["f1_lodo_macro"]


def test_a_drop_planted_on_the_rarest_class_is_found_and_the_thirds_follow_training_prevalence():
    rng = np.random.default_rng(1)
    ids, y = _domain(rng, n=1500)
    val_y = rng.random((600, 3)) < PREVALENCE
    good, val_good = _scores(rng, y), _scores(rng, val_y)
    weak = good.copy()
    rbbb = CLASSES.index("RBBB")  # 8 % training prevalence: the rarest of the three
    weak[:, rbbb] = _scores(rng, y, separation=0.4)[:, rbbb]
    study = _Study()
    study.add("lodo:alpha", ids, y, weak, val_y, val_good)
    study.add("reference:alpha:0", ids, y, good, val_y, val_good)
    cells = _cells(study, n_boot=200)
    rows = rarity_contrast_rows(cells, "s")
    assert set(rows.columns) <= set(table("rarity_contrast").columns)
    row = rows[rows["label_set"] == "noisy"].iloc[0]
    by_class = {c.cls: c for c in cells if c.label_set == "noisy"}
    planted = by_class["RBBB"].f1_reference[0] - by_class["RBBB"].f1_lodo[0]
    assert planted > 0.2
    assert row["drop_rare"] == pytest.approx(planted) and row["drop_common"] == pytest.approx(0.0)
    assert row["rare_prevalence_max"] == pytest.approx(by_class["RBBB"].train_prevalence)
    assert row["common_prevalence_min"] == pytest.approx(by_class["NSR"].train_prevalence)
    assert 0 < row["contrast_lo"] < row["contrast"] < row["contrast_hi"]


def test_cells_below_the_positive_floor_are_left_out_and_too_few_cells_give_no_row():
    arrays = lambda v: np.array([v, v, v])  # noqa: E731
    cells = [ContrastCell("d", f"c{i}", "noisy", "reference", n, 0.01 * (i + 1), arrays(0.5), arrays(0.5 + 0.1 * i))
             for i, n in enumerate([9, 30, 30, 30])]
    rows = rarity_contrast_rows(cells, "s", min_positives=10)
    assert rows.iloc[0]["n_cells"] == 3  # the 9-positive cell is out
    assert rows.iloc[0]["drop_rare"] == pytest.approx(0.1) and rows.iloc[0]["drop_common"] == pytest.approx(0.3)
    too_few = rarity_contrast_rows(cells[:3], "s", min_positives=10).iloc[0]
    assert too_few["n_cells"] == 2 and pd.isna(too_few.get("contrast"))
