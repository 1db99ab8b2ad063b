"""Which test records a fold shows (study/record_views.py): missed rare diagnoses first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from heartbeatai.study.record_views import pick_record_views

CLASSES = ["A", "B", "C"]  # training prevalence: A rarest, C commonest
PREVALENCE = np.array([0.01, 0.05, 0.40])
THRESHOLDS = np.full(3, 0.5)


def _predictions(truth: list[list[int]], probs: list[list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame({f"p_{c}": np.array(probs)[:, j] for j, c in enumerate(CLASSES)})
    return frame.assign(**{f"y_{c}": np.array(truth)[:, j] for j, c in enumerate(CLASSES)})


def test_missed_diagnoses_come_before_false_alarms_and_each_class_once_before_any_twice():
    predictions = _predictions(
        truth=[[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]],
        probs=[[0.9, 0.1, 0.1],   # 0: a false alarm on A, the rarest class, which the record lacks
               [0.1, 0.2, 0.1],   # 1: B missed
               [0.1, 0.1, 0.9],   # 2: C right
               [0.1, 0.1, 0.2],   # 3: C missed
               [0.1, 0.3, 0.1]])  # 4: B missed again
    picks = pick_record_views(predictions, THRESHOLDS, CLASSES, PREVALENCE, n=5)

    assert [(p.row, CLASSES[p.class_index], p.misclassified) for p in picks] == [
        (1, "B", True), (3, "C", True), (0, "A", True), (4, "B", True), (2, "C", False)]
    assert [p.row for p in pick_record_views(predictions, THRESHOLDS, CLASSES, PREVALENCE, n=2)] == [1, 3]
