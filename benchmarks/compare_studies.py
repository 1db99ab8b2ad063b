"""Two runs of a study, table by table: `python -m benchmarks.compare_studies RUNS_A RUNS_B [--study demo]`.

For the seams issue's check that a refactoring changed no result (the demo with
`search: {reproducible: true}` before and after) and the performance issue's that two runs
repeat. Per table (predictions, class_metrics, fold_metrics) it merges the rows of both on
their identity less the trial id (Ray names trials per run), and prints how many rows pair,
which non-float columns differ, and the largest difference of each float column that does.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from heartbeatai.results import ResultsStore
from heartbeatai.results.schema import TABLES

COMPARED = ("predictions", "class_metrics", "fold_metrics")
UNPAIRED_COLUMNS = ("trial_id", "study", "classes_used")  # per run, or an order with no meaning


def compare(a: ResultsStore, b: ResultsStore, study: str, table: str) -> dict:
    x, y = a.read(study, table), b.read(study, table)
    identity = [c for c in TABLES[table].identity if c not in UNPAIRED_COLUMNS]
    merged = x.merge(y, on=identity, suffixes=("_a", "_b"))
    columns = [c for c in x.columns if c in y.columns and c not in identity and c not in UNPAIRED_COLUMNS]
    floats = [c for c in columns if pd.api.types.is_float_dtype(merged[f"{c}_a"])]
    differing = [c for c in columns if c not in floats and not merged[f"{c}_a"].equals(merged[f"{c}_b"])]
    gaps = {}
    for column in floats:
        left, right = merged[f"{column}_a"].to_numpy(float), merged[f"{column}_b"].to_numpy(float)
        same_nan = np.isnan(left) == np.isnan(right)
        with np.errstate(invalid="ignore"):  # inf - inf (an unset threshold on both sides) is no gap
            gap = np.where(np.isnan(left) & np.isnan(right) | (left == right), 0.0, np.abs(left - right))
        worst = float(np.nanmax(gap)) if len(gap) else 0.0
        if worst > 0 or not same_nan.all():
            gaps[column] = worst
    return {"rows_a": len(x), "rows_b": len(y), "paired": len(merged), "differing": differing, "float_gaps": gaps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_studies", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_a", help="storage root of the first run")
    parser.add_argument("runs_b", help="storage root of the second run")
    parser.add_argument("--study", default="demo")
    parser.add_argument("--by", default="metric", help="fold_metrics: also give the largest value gap per this column")
    args = parser.parse_args(argv)
    a, b = ResultsStore(args.runs_a), ResultsStore(args.runs_b)
    identical = True
    for table in COMPARED:
        found = compare(a, b, args.study, table)
        identical &= not found["differing"] and not found["float_gaps"] and found["paired"] == found["rows_a"]
        gaps = ", ".join(f"{c} {v:.1e}" for c, v in found["float_gaps"].items()) or "none"
        print(f"{table}: {found['paired']} rows pair ({found['rows_a']} in A, {found['rows_b']} in B); "
              f"other columns differing: {', '.join(found['differing']) or 'none'}; float gaps: {gaps}")
    x, y = a.read(args.study, "fold_metrics"), b.read(args.study, "fold_metrics")
    key = [c for c in TABLES["fold_metrics"].identity if c not in UNPAIRED_COLUMNS]
    merged = x.merge(y, on=key, suffixes=("_a", "_b"))
    per = (merged["value_a"] - merged["value_b"]).abs().groupby(merged[args.by]).max()
    print(f"fold_metrics value gap per {args.by}: " + ", ".join(f"{k} {v:.1e}" for k, v in per.items()))
    only_b = sorted(set(y[args.by]) - set(x[args.by]))
    if only_b:
        print(f"fold_metrics {args.by} only in B: {', '.join(map(str, only_b))}")
    print("identical" if identical else "NOT identical")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
