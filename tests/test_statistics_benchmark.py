"""The statistics benchmark's planted truths hold in its quick mode (the full figures are in
docs/benchmarks.md: `python -m benchmarks statistics`). Slow: about a minute on two cores."""

from __future__ import annotations

import pytest

from benchmarks import bench_statistics

pytestmark = pytest.mark.slow


def test_every_interval_covers_every_test_is_calibrated_and_the_split_adds_up(capsys):
    assert bench_statistics.main(["--quick", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    summary = out.strip().splitlines()[-1]
    assert "every target met" in summary, out
    assert "identical models: largest |part or total|    +0.00e+00" in out
    assert "5. rarity contrast interval coverage" in out


def test_macro_auprc_over_classes_with_ten_positives_covers_the_benchmark_mix():
    # docs/benchmarks.md's figure (2000 replicates: 0.955, the old all-class average 0.857); 1000 here.
    coverage = bench_statistics.macro_interval_coverage(1000, 0)
    value, error = coverage["macro_auprc"]
    assert value >= 0.93 and abs(error) < 0.02
    assert coverage[bench_statistics.ALL_CLASSES_AUPRC][0] < 0.90
