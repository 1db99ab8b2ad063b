"""The crops benchmark's measure (benchmarks/bench_crops.py): the share of uniformly placed
training crops that hold a record's defining feature, against the arithmetic of one beat train."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_crops
from heartbeatai.data.synthetic.rhythm import PAC, SINUS


def _train(ectopic_at: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r_times = np.arange(0.5, 10.0, 1.0)  # a beat a second, 0.5 s .. 9.5 s
    kinds = np.full(len(r_times), SINUS, dtype=np.int8)
    if ectopic_at is not None:
        kinds[ectopic_at] = PAC
    return r_times, kinds


def test_an_ectopic_beat_is_shown_by_the_crops_that_hold_it_and_the_next_beat():
    r_times, kinds = _train(ectopic_at=3)  # at 3.5 s, the next beat at 4.5 s
    # 5 s crops start in [0, 5]; those holding 3.5 and 4.5 start in [0, 3.5]: 351 of 501 grid points.
    assert bench_crops.visible_share(r_times, kinds, 10.0, 5.0, "ectopic") == pytest.approx(351 / 501)
    assert bench_crops.visible_share(r_times, kinds, 10.0, 10.0, "ectopic") == 1.0  # the whole record
    assert bench_crops.visible_share(*_train(), 10.0, 5.0, "ectopic") == 0.0  # no ectopic beat, nothing shown


def test_a_respiratory_swing_is_shown_only_with_both_rr_intervals_inside():
    r_times = np.array([0.0, 1.0, 2.0, 3.2, 4.2, 5.2, 6.2, 7.2, 8.2, 9.2])  # one RR of 1.2 s among 1.0 s
    kinds = np.full(len(r_times), SINUS, dtype=np.int8)
    # A 2.5 s crop shows the swing where it holds 2.0-3.2 and a 1.0 s interval beside it:
    # 1.0-2.0 (starts in (0.7, 1.0]) or 3.2-4.2 (starts in (1.7, 2.0]).
    share = bench_crops.visible_share(r_times, kinds, 9.5, 2.5, "sa")
    starts = np.arange(0.0, 9.5 - 2.5 + 0.005, 0.01)
    expected = np.mean(((starts <= 1.0) & (starts + 2.5 > 3.2)) | ((starts <= 2.0) & (starts + 2.5 > 4.2)))
    assert share == pytest.approx(expected) and 0 < share < 1


def test_the_benchmark_prints_a_share_per_class_and_crop(capsys):
    assert bench_crops.main(["--records", "5", "--crops", "5,10"]) == 0
    out = capsys.readouterr().out
    for abbr in bench_crops.CLASSES:
        assert f"   {abbr:<6}" in out
    assert "crops benchmark:" in out
