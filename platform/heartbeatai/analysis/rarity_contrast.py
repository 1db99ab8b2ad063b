"""Is the LODO drop worst on rare classes? The rarest third of classes against the commonest.

The paper's claim is a steep drop when a source is held out, "worst on rare classes". Over
every (held-out domain, class) cell of the degradation split with at least
`CONTRAST_MIN_POSITIVES` test positives (rarer cells have unreliable F1), ranked by the
class's prevalence in the LODO fold's training split: the drop (reference F1 minus LODO
F1, at each model's deployed thresholds) averaged over the rarest third of cells, minus
the same average over the commonest third. Its interval is a percentile interval of the
degradation split's paired bootstrap: records resampled within each held-out domain
(independent draws per domain, so replicate b across domains is one stratified bootstrap
of the pooled records), the same replicate for both models and every seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from heartbeatai.analysis.weighted_metrics import percentile_interval
from heartbeatai.results.schema import REFERENCE_KINDS

# Cells need at least 10 test positives in the held-out domain: below that one record moves an
# F1 by a tenth, and the demo's phenomenon check counts the same cells (docs/analysis.md).
CONTRAST_MIN_POSITIVES = 10


@dataclass(frozen=True)
class ContrastCell:
    """One (held-out domain, class) of the degradation split with its bootstrap replicates."""

    domain: str
    cls: str
    label_set: str
    reference_kind: str
    n_positives: int
    train_prevalence: float  # in the LODO fold's training split
    f1_lodo: np.ndarray  # (B + 1,): row 0 the point estimate, then the replicates
    f1_reference: np.ndarray


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
        drop = lambda group: np.mean([c.f1_reference - c.f1_lodo for c in group], axis=0)  # noqa: E731
        drop_rare, drop_common = drop(rare), drop(common)
        contrast = drop_rare - drop_common
        low, high = percentile_interval(contrast[1:])
        ratio = drop_rare[0] / drop_common[0] if drop_common[0] > 0 else float("nan")
        rows.append({
            **base, "reference_kind": "+".join(sorted({c.reference_kind for c in eligible})),
            "n_rare": len(rare), "n_common": len(common),
            "n_domains": len({c.domain for c in eligible}),
            "rare_prevalence_max": float(rare[-1].train_prevalence),
            "common_prevalence_min": float(common[0].train_prevalence),
            "f1_reference_macro": float(np.mean([c.f1_reference[0] for c in eligible])),
            "f1_lodo_macro": float(np.mean([c.f1_lodo[0] for c in eligible])),
            "drop_rare": float(drop_rare[0]), "drop_common": float(drop_common[0]),
            "contrast": float(contrast[0]), "contrast_lo": float(low), "contrast_hi": float(high),
            "ratio": float(ratio),
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
    return (f"rarity contrast ({r['n_cells']} cells, LODO against {paired}): F1 drop on the rarest third "
            f"{r['drop_rare']:+.3f}, commonest third {r['drop_common']:+.3f}, difference {r['contrast']:+.3f} "
            f"[{r['contrast_lo']:+.3f}, {r['contrast_hi']:+.3f}]; reference macro-F1 {r['f1_reference_macro']:.3f}, "
            f"LODO {r['f1_lodo_macro']:.3f}")
