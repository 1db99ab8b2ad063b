"""Data-layer speed: prepare throughput and random-window reads (issue 2, section 6).

`python -m benchmarks data [--records N] [--windows N] [--workers N]` prints, from one run
on this machine:
- a plain `wfdb.rdrecord` loop over challenge-format records (the reference),
- `prepare` on the same records, records/s per core (target >= 200 for 10 s, 500 Hz),
- random 10 s windows from the prepared dataset as float32 (12, T), windows/s per core
  from a warm page cache (target >= 5,000).
The records are generated here (challenge format: `.hea` + v4 `.mat` of int16 microvolts).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.ecg import LEADS

PREPARE_TARGET = 200.0  # records/s per core
WINDOW_TARGET = 5000.0  # windows/s per core


def write_records(folder: Path, count: int, seconds: float = 10.0, fs: int = 500, seed: int = 0) -> list[Path]:
    """Challenge-format records with ECG-like, distinct content."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * fs)) / fs
    headers = []
    for i in range(count):
        name = f"E{i:05d}"
        phase = (t * rng.uniform(50, 110) / 60 + rng.uniform()) % 1.0
        beat = np.exp(-((phase - 0.3) ** 2) / 2.9e-4)[:, None] * rng.uniform(-1500, 1500, 12)
        val = (beat + rng.normal(0, 20, beat.shape)).astype(np.int16).T
        scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
        lines = [f"{name} 12 {fs} {val.shape[1]} 05-May-2020 09:49:17"]
        lines += [f"{name}.mat 16+24 1000/mV 16 0 {val[k, 0]} 0 0 {lead}" for k, lead in enumerate(LEADS)]
        lines += ["#Age: 65", "#Sex: Female", "#Dx: 426783006,164889003", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
        (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
        headers.append(folder / f"{name}.hea")
    return headers


class Clock:
    """Wall time and CPU time (this process and its finished children).

    Per-core rates divide by CPU seconds: on a shared machine (this one has 2 cores and
    several users) wall time measures the neighbours as much as the code.
    """

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = self._cpu_now() - self._cpu

    @staticmethod
    def _cpu_now() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system


def bench_wfdb(headers: list[Path]) -> Clock:
    with Clock() as clock:
        for header in headers:
            wfdb.rdrecord(str(header.with_suffix("")))
    return clock


def bench_prepare(src: Path, out: Path, workers: int) -> Clock:
    """Reading, preprocessing, writing, the index and the duplicate search, all included."""
    with Clock() as clock:
        summary = prepare([src], out, PrepareSettings(fs=500, max_seconds=60), workers=workers, progress=False)
    if summary.skipped:
        raise RuntimeError(f"benchmark records were skipped: {summary.reasons.most_common(3)}")
    return clock


def bench_windows(data: PreparedDataset, count: int, seconds: float = 10.0, seed: int = 0) -> Clock:
    rng = np.random.default_rng(seed)
    length = int(seconds * data.fs)
    lengths = data.records["length"].to_numpy()
    rows = rng.integers(0, len(data), count)
    starts = (rng.random(count) * np.maximum(lengths[rows] - length, 1)).astype(np.int64)
    for row in range(len(data)):  # warm the page cache: the target is for a warm cache
        data.signal(row).sum()
    with Clock() as clock:
        for row, first in zip(rows.tolist(), starts.tolist()):
            window = data.window(row, first, length)
    assert window.dtype == np.float32 and window.shape == (12, length)
    return clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks data", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600, help="challenge records to generate (default 600)")
    parser.add_argument("--windows", type=int, default=20000, help="random windows to read (default 20000)")
    parser.add_argument("--workers", type=int, default=1, help="prepare workers (per-core figure divides by this)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        src = Path(tmp) / "georgia"
        headers = write_records(src, args.records)
        reference = bench_wfdb(headers)
        prepared = bench_prepare(src, Path(tmp) / "prepared", args.workers)
        windows = bench_windows(PreparedDataset(Path(tmp) / "prepared"), args.windows)
    print(f"records: {args.records} challenge-format, 10 s at 500 Hz, 12 leads; prepare workers: {args.workers}")
    print("                                   per core (CPU time)    wall clock")
    _line("wfdb.rdrecord loop (reference)", args.records, reference, "records/s", None)
    _line("prepare (all stages)", args.records, prepared, "records/s", PREPARE_TARGET)
    _line("random 10 s windows, float32", args.windows, windows, "windows/s", WINDOW_TARGET)
    return 0


def _line(what: str, count: int, clock: Clock, unit: str, target: float | None) -> None:
    per_core = count / max(clock.cpu, 1e-9)
    verdict = "" if target is None else f"  target >= {target:.0f}: {'OK' if per_core >= target else 'BELOW'}"
    print(f"{what:<34} {per_core:8.0f} {unit:<11} {count / clock.wall:8.0f} {unit}{verdict}")
