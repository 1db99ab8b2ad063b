"""The data benchmark runs end to end and prints its three figures (not a timed test)."""

from __future__ import annotations

import re

from benchmarks import bench_data


def test_data_benchmark_prints_prepare_reference_and_window_rates(capsys):
    assert bench_data.main(["--records", "12", "--windows", "100"]) == 0
    out = capsys.readouterr().out
    for label in ("wfdb.rdrecord loop (reference)", "prepare (all stages)", "random 10 s windows, float32"):
        assert re.search(rf"{re.escape(label)}\s+\d+ \w+/s", out), out
