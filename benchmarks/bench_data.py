"""Data-layer speed and memory: prepare throughput, random-window reads, peak memory per
record and label parsing (issue 2, section 6; issue 20, items 5-6).

`python -m benchmarks data [--records N] [--windows N] [--workers N] [--memory-samples N]`
prints, from one run on this machine:
- a plain `wfdb.rdrecord` loop over challenge-format records (the reference),
- `prepare` on the same records, records/s per core (target >= 200 for 10 s, 500 Hz),
- random 10 s windows from the prepared dataset as float32 (12, T), windows/s per core
  from a warm page cache (target >= 5,000);
- peak memory per raw MB of one large legal record in each container the readers take
  (challenge level-4 and compressed level-5 `val`, a format-16 `.dat`, a CPSC2018 struct),
  prepared alone with one worker in a child process: its peak RSS less that of the same
  child preparing a small record of the same kind, over the record's raw size (target
  <= 3; by default 12 x 7.1 M int16 samples at 2 kHz, 170 MB, just under the limit);
- label parsing at 200k codes: `clean_codes` over 200,000 distinct codes, and a header of
  100,000 `#Dx` codes (0.6 MB) refused by the challenge reader (target well under 1 s).
The records are generated here (challenge format: `.hea` + v4 `.mat` of int16 microvolts).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from heartbeatai.data.challenge_reader import read_challenge
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.raw_record import RecordError, clean_codes
from heartbeatai.ecg import LEADS

PREPARE_TARGET = 200.0  # records/s per core
WINDOW_TARGET = 5000.0  # windows/s per core
MEMORY_TARGET = 3.0  # peak MB per raw MB of a record
PARSE_TARGET = 1.0  # seconds
LARGE_KINDS = ("challenge-v4", "challenge-v5-compressed", "native-16", "cpsc-double")


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


# --- peak memory of one large record -----------------------------------------------

def _beat_tile(fs: int, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """(samples, 12) int16 microvolts of an ECG-like signal, repeated to fill large records."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    phase = (t * 72 / 60 + rng.uniform()) % 1.0
    beat = np.exp(-((phase - 0.3) ** 2) / 2.9e-4)[:, None] * rng.uniform(-1500, 1500, 12)
    return (beat + rng.normal(0, 20, beat.shape)).astype("<i2")


def _tiles(samples: int, fs: int):
    tile = _beat_tile(fs)
    left = samples
    while left:
        take = min(left, len(tile))
        yield tile[:take]
        left -= take


def _challenge_header(name: str, samples: int, fs: int) -> str:
    lines = [f"{name} 12 {fs} {samples}"] + [f"{name}.mat 16+24 1000/mV 16 0 0 0 0 {lead}" for lead in LEADS]
    return "\n".join([*lines, "#Age: 50", "#Sex: Male", "#Dx: 426783006"]) + "\n"


_MAT5_HEADER = b"MATLAB 5.0 MAT-file, benchmarks".ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0100) + b"IM"


def write_large_record(folder: Path, kind: str, samples: int, fs: int = 2000) -> int:
    """One record of 12 x `samples` values in the container `kind` (LARGE_KINDS), written a
    tile at a time (never held whole); returns its raw size in bytes (the matrix as stored:
    int16, or float64 for CPSC2018's struct, whose rate is its own 500 Hz)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "challenge-v4":
        with open(folder / "E00001.mat", "wb") as handle:
            handle.write(struct.pack("<5i", 30, 12, samples, 0, 4) + b"val\x00")  # int16, 12 rows
            for tile in _tiles(samples, fs):
                handle.write(tile.tobytes())
        (folder / "E00001.hea").write_text(_challenge_header("E00001", samples, fs))
        return samples * 12 * 2
    if kind == "challenge-v5-compressed":
        n = samples * 12 * 2
        body = (struct.pack("<IIII", 6, 8, 10, 0) + struct.pack("<IIii", 5, 8, 12, samples)
                + struct.pack("<HH", 1, 3) + b"val\x00" + struct.pack("<II", 3, n))
        deflate = zlib.compressobj(6)
        parts = [deflate.compress(struct.pack("<II", 14, len(body) + n + (-n % 8)) + body)]
        parts += [deflate.compress(tile.tobytes()) for tile in _tiles(samples, fs)]
        stream = b"".join(parts) + deflate.compress(bytes(-n % 8)) + deflate.flush()
        (folder / "E00001.mat").write_bytes(_MAT5_HEADER + struct.pack("<II", 15, len(stream)) + stream)
        (folder / "E00001.hea").write_text(_challenge_header("E00001", samples, fs))
        return n
    if kind == "native-16":
        with open(folder / "s0001_re.dat", "wb") as handle:
            for tile in _tiles(samples, fs):
                handle.write(tile.tobytes())
        lines = [f"s0001_re 12 {fs} {samples}"] + [f"s0001_re.dat 16 1000.0(0)/mV 16 0 0 0 0 {lead}" for lead in LEADS]
        (folder / "s0001_re.hea").write_text("\n".join([*lines, "# Reason for admission: Healthy control"]) + "\n")
        return samples * 12 * 2
    if kind == "cpsc-double":
        data = np.concatenate(list(_tiles(samples, 500))).T / 1000.0  # mV, float64 (12, samples)
        scipy.io.savemat(folder / "A0001.mat", {"ECG": {"sex": np.array(["Male"]), "age": np.array([[50]]),
                                                        "data": data}})
        (folder / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\nA0001,1,,\n")
        return data.nbytes
    raise ValueError(f"unknown record kind {kind!r}; one of {', '.join(LARGE_KINDS)}")


# The child's own peak: VmHWM of its address space, which starts afresh at exec.
# getrusage's ru_maxrss would not do: Linux carries it across fork and exec, so a child of
# a large process (pytest, this benchmark after its other parts) starts at its parent's size.
_PEAK_CHILD = (
    "import json, resource, sys\n"
    "from pathlib import Path\n"
    "from heartbeatai.data.prepare import PrepareSettings, prepare\n"
    "summary = prepare([Path(sys.argv[1])], Path(sys.argv[2]), PrepareSettings(), workers=1, progress=False)\n"
    "try:\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()\n"
    "    peak = int(status[0]) / 1024\n"
    "except (OSError, IndexError):\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "print(json.dumps({'prepared': summary.prepared, 'reasons': dict(summary.reasons), 'peak_mb': peak}))\n"
)


def prepare_peak_mb(src: Path, out: Path) -> float:
    """Peak RSS (MB) of a fresh process preparing `src` with one worker, as the kernel saw it."""
    run = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(src), str(out)], capture_output=True, text=True,
                         timeout=900)
    if run.returncode:
        raise RuntimeError(run.stderr[-2000:])
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if result["prepared"] != 1:
        raise RuntimeError(f"{src}: not prepared: {result['reasons']}")
    return result["peak_mb"]


def memory_per_raw_mb(kind: str, samples: int, tmp: Path) -> tuple[float, float, float]:
    """(raw MB, peak MB above a small record of the same kind, that peak per raw MB)."""
    if kind == "cpsc-double":  # float64 at 500 Hz: an hour is the limit (1.79 M samples, 171.8 MB)
        samples = min(samples, 1_790_000)
    small, large = tmp / f"{kind}-small", tmp / f"{kind}-large"
    write_large_record(small / "records", kind, 20_000)
    raw = write_large_record(large / "records", kind, samples) / 1e6
    baseline = prepare_peak_mb(small / "records", small / "out")
    extra = prepare_peak_mb(large / "records", large / "out") - baseline
    return raw, extra * 2**20 / 1e6, extra * 2**20 / 1e6 / raw


def bench_codes(tmp: Path) -> tuple[float, float]:
    """Seconds to clean 200,000 distinct codes, and to refuse a header of 100,000."""
    codes = [f"{i:x}" for i in range(200_000)]
    start = time.perf_counter()
    clean_codes(codes)
    cleaned = time.perf_counter() - start
    folder = tmp / "codes"
    folder.mkdir()
    scipy.io.savemat(folder / "E00001.mat", {"val": _beat_tile(500, 5).T.copy()}, format="4")
    (folder / "E00001.hea").write_text(_challenge_header("E00001", 2500, 500).replace(
        "#Dx: 426783006", "#Dx: " + ",".join(codes[:100_000])))
    start = time.perf_counter()
    try:
        read_challenge(folder / "E00001.hea")
    except RecordError:
        pass
    else:
        raise RuntimeError("a header of 100,000 codes was read")
    return cleaned, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks data", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600, help="challenge records to generate (default 600)")
    parser.add_argument("--windows", type=int, default=20000, help="random windows to read (default 20000)")
    parser.add_argument("--workers", type=int, default=1, help="prepare workers (per-core figure divides by this)")
    parser.add_argument("--memory-samples", type=int, default=7_100_000,
                        help="samples per lead of the large records (default 7.1 M: 170 MB of int16, the issue's)")
    parser.add_argument("--memory-kinds", default=",".join(LARGE_KINDS), help="record containers to measure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        src = Path(tmp) / "georgia"
        headers = write_records(src, args.records)
        reference = bench_wfdb(headers)
        prepared = bench_prepare(src, Path(tmp) / "prepared", args.workers)
        windows = bench_windows(PreparedDataset(Path(tmp) / "prepared"), args.windows)
        cleaned, refused = bench_codes(Path(tmp))
    print(f"records: {args.records} challenge-format, 10 s at 500 Hz, 12 leads; prepare workers: {args.workers}")
    print("                                   per core (CPU time)    wall clock")
    _line("wfdb.rdrecord loop (reference)", args.records, reference, "records/s", None)
    _line("prepare (all stages)", args.records, prepared, "records/s", PREPARE_TARGET)
    _line("random 10 s windows, float32", args.windows, windows, "windows/s", WINDOW_TARGET)
    print(f"parse time at 200k codes: clean_codes {cleaned * 1e3:.0f} ms; a header of 100k #Dx codes refused in "
          f"{refused * 1e3:.0f} ms  target < {PARSE_TARGET:g} s: "
          f"{'OK' if max(cleaned, refused) < PARSE_TARGET else 'BELOW'}")
    print(f"peak memory per raw MB, one record of 12 x {args.memory_samples:,} samples, 1 worker (target <= "
          f"{MEMORY_TARGET:g}):")
    for kind in [k for k in args.memory_kinds.split(",") if k]:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            raw, extra, ratio = memory_per_raw_mb(kind, args.memory_samples, Path(tmp))
        print(f"  {kind:<26} raw {raw:7.1f} MB  peak +{extra:7.1f} MB  {ratio:4.2f} MB per raw MB  "
              f"{'OK' if ratio <= MEMORY_TARGET else 'ABOVE'}", flush=True)
    return 0


def _line(what: str, count: int, clock: Clock, unit: str, target: float | None) -> None:
    per_core = count / max(clock.cpu, 1e-9)
    verdict = "" if target is None else f"  target >= {target:.0f}: {'OK' if per_core >= target else 'BELOW'}"
    print(f"{what:<34} {per_core:8.0f} {unit:<11} {count / clock.wall:8.0f} {unit}{verdict}")
