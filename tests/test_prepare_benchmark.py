"""The data benchmark runs end to end and prints its figures (not a timed test)."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_data


@pytest.mark.slow  # runs the data benchmark; prepare's figures are asserted in test_prepare_*.py
def test_data_benchmark_prints_prepare_reference_window_rates_memory_and_parse_time(capsys):
    argv = ["--records", "12", "--windows", "100", "--memory-samples", "100000", "--memory-kinds", "challenge-v4"]
    assert bench_data.main(argv) == 0
    out = capsys.readouterr().out
    for label in ("wfdb.rdrecord loop (reference)", "prepare (all stages)", "random 10 s windows, float32"):
        assert re.search(rf"{re.escape(label)}\s+\d+ \w+/s", out), out
    assert re.search(r"parse time at 200k codes: clean_codes \d+ ms; a header of 100k #Dx codes refused in \d+ ms", out)
    assert re.search(r"challenge-v4 +raw +2\.4 MB  peak \+ *-?\d+\.\d MB +-?\d+\.\d\d MB per raw MB", out), out
