"""Every metric the platform reports, with the direction it improves in: declared once.

Three families share these names. A tested run's study-level figures (`fold_metrics.metric`)
are the `FOLD_METRICS`; its per-class figures (`class_metrics`) are the `CLASS_METRICS`;
every training epoch reports `val_<fold metric>` plus the validation loss
(`VALIDATION_METRICS`), which are also what a run's best checkpoint and a study's model
selection can be chosen by. The results-store schema, the training loop, the Tune recorder,
the study config and the dashboard all derive their lists from here.

Probabilities are record-level: a record's score is the maximum over its sliding windows'
sigmoid outputs, so the Brier score is that of record-level probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["max", "min"]


@dataclass(frozen=True)
class Metric:
    name: str
    mode: Mode
    description: str
    # Reported by every training epoch as val_<name> (a column of the epochs table) and so
    # usable for selection; False for figures reported only when a run is tested.
    per_epoch: bool = True
    # The values the metric can take: an interval of it is clipped to these (report tables).
    bounds: tuple[float, float] = (0.0, 1.0)
    # How a table or an axis names it ("macro AUROC"); the name itself where empty.
    label: str = ""

    @property
    def shown(self) -> str:
        return self.label or self.name


def _registry(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


# A tested run's study-level figures; macro averages run over the classes present in the set
# (fold_metrics' macro_auprc over those with >= 10 test positives: analysis/macro_intervals.py),
# except the challenge's own macro F-measure, which keeps its definition and its name.
FOLD_METRICS: dict[str, Metric] = _registry(
    Metric("macro_f1", "max", "F1 at the run's validation-tuned thresholds, averaged over the classes present in "
           "the set (not the challenge's macro F-measure: cinc_macro_f)", label="macro F1"),
    Metric("macro_auroc", "max", "macro-averaged area under the ROC curve", label="macro AUROC"),
    Metric("macro_auprc", "max", "macro-averaged average precision", label="macro AUPRC"),
    # Normalised so that the inactive classifier scores 0 and the perfect one 1; worse than
    # inactive is negative, without a floor.
    Metric("challenge_score", "max", "PhysioNet/CinC 2021 challenge score of the thresholded calls",
           bounds=(float("-inf"), 1.0), label="challenge score"),
    Metric("brier", "min", "Brier score of record-level probabilities, averaged over present classes",
           label="Brier score"),
    # Tested runs only: the epochs table keeps its columns, so stores written before it resume.
    Metric("cinc_macro_f", "max", "PhysioNet/CinC 2021 macro F-measure over the 26 scored classes: a class absent "
           "from the set but called counts as F = 0", per_epoch=False, label="CinC macro F"),
)
# fold_metrics' macro_auprc averages the present classes with at least this many test positives:
# below it average precision is biased upward (analysis/macro_intervals.py says how much).
MACRO_AUPRC_MIN_POSITIVES = 10
# The fold metrics every epoch reports on validation (as val_<name>).
EPOCH_FOLD_METRICS: tuple[str, ...] = tuple(m.name for m in FOLD_METRICS.values() if m.per_epoch)

# Per-class figures that carry intervals in the class_metrics table.
CLASS_METRICS: dict[str, Metric] = _registry(
    Metric("f1", "max", "F1 at the class's validation-tuned threshold", label="F1"),
    Metric("auroc", "max", "area under the ROC curve", label="AUROC"),
    Metric("auprc", "max", "average precision", label="AUPRC"),
)

VALIDATION_PREFIX = "val_"
# What every epoch reports on the training domains' validation split; any of them can select.
VALIDATION_METRICS: dict[str, Metric] = _registry(
    Metric("val_loss", "min", "the training loss on the validation records", bounds=(0.0, float("inf"))),
    *(Metric(f"{VALIDATION_PREFIX}{name}", FOLD_METRICS[name].mode, f"validation {FOLD_METRICS[name].description}",
             bounds=FOLD_METRICS[name].bounds)
      for name in EPOCH_FOLD_METRICS),
)
DEFAULT_SELECTION_METRIC = "val_macro_auroc"
# Selecting on these tunes thresholds and picks the model on the same validation records.
THRESHOLD_DEPENDENT = ("val_macro_f1", "val_challenge_score")

# The columns of the epochs table and of every per-epoch report, in order.
# `precision` ("bf16" or "fp32") goes to the trials table's provenance, not to the epochs table.
EPOCH_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", *VALIDATION_METRICS, "val_classes_used", "epoch_seconds",
                                  "precision")


def metric_mode(name: str) -> Mode:
    """"max" or "min": which way `name` (a validation, fold or class metric) improves."""
    for family in (VALIDATION_METRICS, FOLD_METRICS, CLASS_METRICS):
        if name in family:
            return family[name].mode
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(known_metric_names())}")


def fold_metric_of(validation_metric: str) -> str | None:
    """The fold metric a validation metric estimates ("val_macro_auroc" -> "macro_auroc"), or
    None for the validation loss, which a tested run does not report."""
    name = validation_metric.removeprefix(VALIDATION_PREFIX)
    return name if name in FOLD_METRICS else None


def known_metric_names() -> list[str]:
    return [*VALIDATION_METRICS, *FOLD_METRICS, *CLASS_METRICS]
