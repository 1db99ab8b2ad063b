"""Is the LODO drop worst on rare classes? The rarest third of classes against the commonest.

The paper's claim is a steep drop when a source is held out, "worst on rare classes". Over
every (held-out domain, class) cell of the degradation split with at least
`CONTRAST_MIN_POSITIVES` test positives (rarer cells have unreliable F1), ranked by the
class's prevalence in the LODO fold's training split: the drop (reference F1 minus LODO
F1, at each model's deployed thresholds, seeds averaged) averaged over the rarest third of
cells, minus the same average over the commonest third; and, over every eligible cell, the
slope of the drop on log10 training prevalence, signed as the drop per tenfold *lower*
prevalence (positive: worse when rarer).

The claim is about classes, not about these trained models on these records, so the
intervals are not a record bootstrap with the models fixed: that one holds each cell's drop
fixed and covered 0 in 0.86 of simulated studies under a null with between-cell variation
(issue 19). Both figures take their intervals from the cells' own scatter: a cell's observed
drop carries its record noise, its seed noise and the cell's own deviation, so the scatter
carries all three. The unit of replication is the class: a class hard to transfer is hard
from every held-out domain, so its cells share a deviation. Both variances are
delete-one-class jackknifes (CV3; MacKinnon, Nielsen & Webb 2023, "Fast and reliable
jackknife and bootstrap methods for cluster-robust inference", J. Applied Econometrics);
statsmodels has no CV3, hence the few lines below.

- The slope is an ordinary least-squares fit over cells, with a t on (classes - 1) df.
  Measured on 2000 simulated null studies per setting (8 or 15 classes x 4 domains;
  between-cell SD 0.06-0.10, or a class effect of SD 0.06-0.10): statsmodels' cluster-robust
  CR1 covered 0 in 0.88-0.94 of them, cell-level HC3 in 0.66-0.73 once classes carry an
  effect, the jackknife in 0.935-0.962.
- The contrast is a difference of two means, each over its own few classes, and rare
  classes' drops scatter more (fewer positives): the jackknife is taken per third, each
  with its own small-sample factor, and the t's degrees of freedom are Welch-Satterthwaite's
  over the two thirds. With a class's cells all in one third and as many cells per class,
  this is exactly Welch's interval on the classes' mean drops (tested against scipy). One
  jackknife and t on (classes - 1) df over both thirds covered 0.915-0.924 (4000 studies)
  with 2 classes per third whose noise differs (the statistics benchmark, section 5): the df
  belong to the noisier third, not to both.

tests/test_rarity_contrast.py keeps the coverage check (12 classes, 400 studies per setting).
A shift common to every class of one held-out domain stays in the scatter: it widens the
intervals, it cannot bias them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from heartbeatai.analysis.intervals import CI_LEVEL
from heartbeatai.results.schema import REFERENCE_KINDS

# Cells need at least 10 test positives in the held-out domain: below that one record moves an
# F1 by a tenth, and the demo's phenomenon check counts the same cells (docs/analysis.md).
CONTRAST_MIN_POSITIVES = 10
# A class absent from a LODO training split has training prevalence 0, and log 0 is no
# abscissa: such a cell counts as one record in a thousand.
PREVALENCE_FLOOR = 1e-3
METHOD = ("rarest minus commonest third of class x domain cells, delete-one-class jackknife per third, "
          "Welch-Satterthwaite t; slope: OLS over cells, delete-one-class jackknife (CV3), t with classes - 1 df; "
          "between-cell, seed and record variance")


@dataclass(frozen=True)
class ContrastCell:
    """One (held-out domain, class) of the degradation split: its seed-averaged F1 of both models."""

    domain: str
    cls: str
    label_set: str
    reference_kind: str
    n_positives: int
    train_prevalence: float  # in the LODO fold's training split
    f1_lodo: float
    f1_reference: float

    @property
    def drop(self) -> float:
        return self.f1_reference - self.f1_lodo


def jackknife_fit(drop, x, classes, with_interval: bool = True) -> tuple[float, float, float]:
    """The OLS slope of `drop` on `x` (with an intercept) and its CI_LEVEL interval from the
    delete-one-class jackknife (nan without `with_interval`: the caller knows when the classes
    cannot estimate it)."""
    y, x = np.asarray(drop, dtype=float), np.asarray(x, dtype=float)
    nan = float("nan")
    if np.ptp(x) == 0:  # every cell at one abscissa: no slope to fit
        return nan, nan, nan
    design = np.column_stack([np.ones_like(x), x])
    slope = float(np.linalg.lstsq(design, y, rcond=None)[0][1])
    if not with_interval:
        return slope, nan, nan
    groups = pd.factorize(np.asarray(classes))[0]
    n_classes = int(groups.max()) + 1
    left_out = []
    for g in range(n_classes):
        keep = groups != g
        if np.ptp(x[keep]) == 0:  # the rest of the cells cannot fit a slope: no jackknife
            return slope, nan, nan
        left_out.append(np.linalg.lstsq(design[keep], y[keep], rcond=None)[0][1])
    se = np.sqrt((n_classes - 1) / n_classes * np.sum((np.array(left_out) - slope) ** 2))
    half = float(stats.t.ppf(0.5 + CI_LEVEL / 2, n_classes - 1) * se)
    return slope, slope - half, slope + half


def contrast_fit(rare: list[ContrastCell], common: list[ContrastCell]) -> tuple[float, float, float]:
    """Mean drop of `rare` minus that of `common`, with its CI_LEVEL interval: per third, the
    delete-one-class jackknife with that third's (classes - 1)/classes factor; a t with
    Welch-Satterthwaite df. A class with cells in both thirds counts in the third holding
    most of them. nan bounds when a third has fewer than 2 classes."""
    drops = lambda group: np.array([c.drop for c in group])  # noqa: E731
    contrast = float(drops(rare).mean() - drops(common).mean())
    nan = float("nan")
    parts: dict[str, list[float]] = {"rare": [], "common": []}
    for cls in dict.fromkeys(c.cls for c in rare + common):
        rest_rare = [c for c in rare if c.cls != cls]
        rest_common = [c for c in common if c.cls != cls]
        if not rest_rare or not rest_common:  # the class is a whole third: nothing to compare without it
            return contrast, nan, nan
        deviation = drops(rest_rare).mean() - drops(rest_common).mean() - contrast
        in_rare = sum(c.cls == cls for c in rare) >= sum(c.cls == cls for c in common)
        parts["rare" if in_rare else "common"].append(float(deviation))
    if min(len(p) for p in parts.values()) < 2:
        return contrast, nan, nan
    variances = [(len(p) - 1) / len(p) * np.sum(np.square(p)) for p in parts.values()]
    variance = sum(variances)
    if variance == 0:
        return contrast, contrast, contrast
    df = variance**2 / sum(v**2 / (len(p) - 1) for v, p in zip(variances, parts.values()))
    half = float(stats.t.ppf(0.5 + CI_LEVEL / 2, df) * np.sqrt(variance))
    return contrast, contrast - half, contrast + half


def _classes(cells: list[ContrastCell]) -> int:
    return len({c.cls for c in cells})


def rarity_contrast_rows(cells: list[ContrastCell], study: str,
                         min_positives: int = CONTRAST_MIN_POSITIVES) -> pd.DataFrame:
    """One row per label set of the cells; its figures are left empty with fewer than three
    eligible cells (one per third)."""
    rows = []
    for label_set in sorted({c.label_set for c in cells}):
        eligible = [c for c in cells if c.label_set == label_set and c.n_positives >= min_positives]
        base = {"study": study, "label_set": label_set, "min_positives": min_positives, "n_cells": len(eligible)}
        if len(eligible) < 3:  # no third to compare: a row that says so, without figures
            rows.append(base)
            continue
        # Rarest first; ties broken by name so the thirds do not depend on input order.
        eligible.sort(key=lambda c: (c.train_prevalence, c.domain, c.cls))
        third = len(eligible) // 3
        rare, common = eligible[:third], eligible[-third:]
        drop_rare, drop_common = np.mean([c.drop for c in rare]), np.mean([c.drop for c in common])
        # A third whose cells are all one class leaves the jackknife nothing to fit without it:
        # no interval (nor for a slope over fewer than 3 classes).
        contrast, low, high = contrast_fit(rare, common)
        log_prevalence = np.log10(np.maximum([c.train_prevalence for c in eligible], PREVALENCE_FLOOR))
        slope, slope_low, slope_high = jackknife_fit([c.drop for c in eligible], -log_prevalence,
                                                          [c.cls for c in eligible], _classes(eligible) >= 3)
        ratio = drop_rare / drop_common if drop_common > 0 else float("nan")
        rows.append({
            **base, "reference_kind": "+".join(sorted({c.reference_kind for c in eligible})),
            "n_rare": len(rare), "n_common": len(common),
            "n_domains": len({c.domain for c in eligible}), "n_classes": len({c.cls for c in eligible}),
            "rare_prevalence_max": float(rare[-1].train_prevalence),
            "common_prevalence_min": float(common[0].train_prevalence),
            "f1_reference_macro": float(np.mean([c.f1_reference for c in eligible])),
            "f1_lodo_macro": float(np.mean([c.f1_lodo for c in eligible])),
            "drop_rare": float(drop_rare), "drop_common": float(drop_common),
            "contrast": contrast, "contrast_lo": low, "contrast_hi": high, "ratio": float(ratio),
            "slope": slope, "slope_lo": slope_low, "slope_hi": slope_high, "method": METHOD,
        })
    return pd.DataFrame(rows)


def contrast_summary(rows: pd.DataFrame) -> str:
    """One line for the console."""
    noisy = rows[rows["label_set"] == "noisy"] if not rows.empty else rows
    if noisy.empty or pd.isna(noisy.iloc[0].get("contrast")):
        return (f"rarity contrast: fewer than 3 class x domain cells with >= {CONTRAST_MIN_POSITIVES} "
                "test positives")
    r = noisy.iloc[0]
    paired = " and ".join("the " + REFERENCE_KINDS.get(kind, kind) for kind in str(r["reference_kind"]).split("+"))
    return (f"rarity contrast ({r['n_cells']} cells of {r['n_classes']} classes, LODO against {paired}): F1 drop "
            f"on the rarest third {r['drop_rare']:+.3f}, commonest third {r['drop_common']:+.3f}, difference "
            f"{r['contrast']:+.3f} [{r['contrast_lo']:+.3f}, {r['contrast_hi']:+.3f}]; drop per tenfold rarer "
            f"{r['slope']:+.3f} [{r['slope_lo']:+.3f}, {r['slope_hi']:+.3f}] (intervals over classes); "
            f"reference macro-F1 {r['f1_reference_macro']:.3f}, LODO {r['f1_lodo_macro']:.3f}")
