"""The statistics benchmark's planted truths hold in its quick mode (the full figures are in
the README: `python -m benchmarks statistics`). Slow: about a minute on two cores."""

from __future__ import annotations

import pytest

from benchmarks import bench_statistics

pytestmark = pytest.mark.slow


def test_every_interval_covers_every_test_is_calibrated_and_the_split_adds_up(capsys):
    assert bench_statistics.main(["--quick", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "every target met" in out, out
    assert "identical models: largest |part or total|    +0.00e+00" in out
