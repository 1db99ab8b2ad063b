"""A few test records of a fold's selected model, explained for the dashboard (which has no torch).

Records are ranked by the rarest class (training prevalence) the model missed on them, then
by the rarest class it called falsely, then by the rarest class it got right; one view per
record, for that class, and one record per class before any class gets a second: a handful
of views then covers several of the rare classes a reader most wants to see the model fail
or succeed on, a missed rare diagnosis before a false alarm on a class the record lacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

# Seconds of signal a view shows (at most a crop): enough for a few beats, small enough to ship.
VIEW_SECONDS = 5.0
IG_STEPS = 16


@dataclass(frozen=True)
class RecordPick:
    row: int  # row of the predictions frame
    class_index: int
    misclassified: bool


def pick_record_views(predictions: pd.DataFrame, thresholds: np.ndarray, classes: Sequence[str],
                      train_prevalence: np.ndarray, n: int) -> list[RecordPick]:
    """Up to `n` (record, class) views among a tested run's predictions (its p_/y_ columns)."""
    _, truth, called = _calls(predictions, thresholds, classes)
    rarity = np.argsort(np.argsort(train_prevalence))  # 0 = rarest
    picks = []
    for i in range(len(called)):
        # Groups in order: missed, false alarm, right; within each, the record's rarest class.
        for group, classes_of in enumerate((truth[i] & ~called[i], called[i] & ~truth[i], truth[i] & called[i])):
            found = np.flatnonzero(classes_of)
            if len(found):
                picks.append((group, rarity[found].min(), i, found[np.argmin(rarity[found])]))
                break
    picks = sorted(picks)
    first_of_class: dict[int, tuple] = {}
    for pick in picks:
        first_of_class.setdefault(pick[3], pick)
    picks = list(first_of_class.values()) + [p for p in picks if p not in first_of_class.values()]
    return [RecordPick(int(i), int(c), group < 2) for group, _, i, c in picks[:n]]


class Explainer(Protocol):
    """Attributes a checkpoint's call of one class on one record to its leads and time."""

    excerpt_seconds: float  # how much of a record a view shows and explains

    def explain(self, excerpt: np.ndarray, row: int, class_index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(attribution (12, T), SE gates by stage) of the (12, T) excerpt of dataset row `row`."""


class IntegratedGradients:
    """The checkpoint's model explained by integrated gradients (heartbeatai.explain)."""

    def __init__(self, checkpoint: str | Path, dataset):
        import torch

        from heartbeatai.training.factory import signal_transform
        from heartbeatai.training.predict import load_trained_model

        self.model, _, trial = load_trained_model(checkpoint, torch.device("cpu"))
        self.transform = signal_transform(trial, dataset.fs)
        self.demographics = dataset.demographics() if trial.model.demographics else None
        self.excerpt_seconds = min(trial.preprocess.crop_seconds, VIEW_SECONDS)

    def explain(self, excerpt: np.ndarray, row: int, class_index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from heartbeatai.explain import attribute

        demographics = self.demographics[row] if self.demographics is not None else None
        explained = attribute(self.model, self.transform(excerpt), [class_index], demographics=demographics,
                              n_steps=IG_STEPS)
        return explained.values[0], explained.se_gates


def record_view_rows(explainer: Explainer, dataset, predictions: pd.DataFrame, thresholds: np.ndarray,
                     classes: Sequence[str], picks: list[RecordPick], key: Mapping[str, Any]) -> pd.DataFrame:
    """The record_views rows of `picks`: signal excerpt, labels, calls and attributions of each."""
    probs, truth, called = _calls(predictions, thresholds, classes)
    length = int(round(explainer.excerpt_seconds * dataset.fs))
    rows = []
    for rank, pick in enumerate(picks):
        record_id = predictions["record_id"].iloc[pick.row]
        row = int(dataset.index_of([record_id])[0])
        excerpt = dataset.window(row, 0, length)
        attribution, se_gates = explainer.explain(excerpt, row, pick.class_index)
        p, t, c = probs[pick.row], truth[pick.row], called[pick.row]
        rows.append({
            **key,
            "record_id": record_id, "class": classes[pick.class_index],
            "true_labels": json.dumps([name for name, on in zip(classes, t) if on]),
            "pred_labels": json.dumps([name for name, on in zip(classes, c) if on]),
            "probabilities": json.dumps({name: round(float(v), 4) for name, v in zip(classes, p)}),
            "fs": int(dataset.fs),
            "signal": json.dumps(np.round(excerpt, 3).tolist()),
            "attribution": json.dumps(np.round(attribution, 5).tolist()),
            "se_gates": json.dumps({str(k): np.round(v, 4).tolist() for k, v in se_gates.items()}),
            "misclassified": pick.misclassified,
            "rank": rank,
        })
    return pd.DataFrame(rows)


def _calls(predictions: pd.DataFrame, thresholds: np.ndarray, classes: Sequence[str]):
    """(probabilities, labels, calls at the run's thresholds), each (N, C)."""
    probs = predictions[[f"p_{c}" for c in classes]].to_numpy()
    truth = predictions[[f"y_{c}" for c in classes]].to_numpy(dtype=bool)
    return probs, truth, probs >= thresholds
