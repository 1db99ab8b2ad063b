"""The few lines a finished study ends with: what its analysis decided, on one screen.

The ablations are the study's main product, so the console says, before pointing at the
dashboard: per arm, the across-domain decision and its posterior; per held-out domain, the
largest differences with their intervals; and whether the drop is worst on rare classes.
It reads the analysis tables only, and says nothing about a table that was not written.
"""

from __future__ import annotations

import pandas as pd

from heartbeatai.results import ResultsStore

_LARGEST = 3  # per-domain differences shown


def _interval(row, name: str) -> str:
    lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
    shown = f"{row[name]:+.3f}"
    return shown + (f" [{lo:+.3f}, {hi:+.3f}]" if pd.notna(lo) and pd.notna(hi) else " (no interval)")


def _read(store: ResultsStore, study: str, table: str) -> pd.DataFrame:
    try:
        return store.read(study, table)
    except (FileNotFoundError, KeyError, ValueError):
        return pd.DataFrame()


def closing_lines(store: ResultsStore, study: str, metric: str) -> list[str]:
    """The summary's lines for `metric` (a fold metric such as macro_auroc); [] without tests."""
    lines: list[str] = []
    tests = _read(store, study, "ablation_tests")
    if not tests.empty:
        tests = tests[(tests["metric"] == metric) & ~tests["reference"].astype(bool)]
    for protocol, rows in (tests.groupby("protocol", sort=False) if not tests.empty else ()):
        across = rows[rows["scope"] == "across"].sort_values("diff", ascending=False)
        if across.empty:
            continue
        n_folds = int(across["n_folds"].max())
        lines.append(f"{protocol}: each arm minus full, {metric}, across {n_folds} held-out domain(s) "
                     f"(positive: the arm is better)")
        for _, row in across.iterrows():
            lines.append(f"  {row['arm']:<22s} {_interval(row, 'diff')}  P(better) {row['p_better']:.2f}  "
                         f"P(worse) {row['p_worse']:.2f}  -> {row['decision']}")
        folds = rows[rows["scope"] == "fold"]
        largest = folds.reindex(folds["diff"].abs().sort_values(ascending=False).index).head(_LARGEST)
        if not largest.empty:
            lines.append("  largest per-domain differences:")
            for _, row in largest.iterrows():
                lines.append(f"    {row['arm']} on {row['fold_id']}: {_interval(row, 'diff')} -> {row['decision']}")
    contrast = _read(store, study, "rarity_contrast")
    if not contrast.empty:
        row = contrast.sort_values("label_set").iloc[0]  # "clean" before "noisy": the truth where it is known
        lines.append(f"rare against common classes ({row['label_set']} labels, {int(row['n_cells'])} cells): LODO drop "
                     f"in F1 rare {row['drop_rare']:+.3f}, common {row['drop_common']:+.3f}; contrast "
                     f"{_interval(row, 'contrast')}, ratio {row['ratio']:.1f}")
    return lines
