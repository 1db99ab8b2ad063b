"""The data layer at CinC-2021 scale: prepare, the duplicate search, folds and the card, at two
or more sizes, each stage's time, peak memory and growth (issue 26).

`python -m benchmarks scale [--records 1500,4500] [--workers 1]` writes, per size, a synthetic
release in the challenge format with the five paper sources in their CinC 2021 proportions
(package_data/synthetic/source_counts.csv: CPSC 6,877, PTB-XL 21,837, Georgia 10,344,
Chapman 10,247, Ningbo 34,905 of 84,210), 12 leads at 500 Hz, 10 s records except CPSC's
6-60 s, labels drawn at each source's class prevalences, and 1% of the records re-released
(the same signal under another name, another source and half the gain: what the duplicate
search must join). Each stage runs in its own process; its memory is the kernel's own accounting of that
process (/proc/<pid>/status, sampled every 20 ms): the peak RSS, which includes the pages of
the memory-mapped shards a stage reads (the kernel reclaims them), and the anonymous peak:

- prepare (reading, resampling, the exact and coarse hashes, the index; `--workers`),
- the duplicate search (every record's sketch, the LSH near-duplicate groups, and the
  patient/hash connected components the fold planner splits by),
- `data folds` for every protocol (lodo, intra, reference) and `data card`.

It prints records per second per stage, the growth exponent between sizes after each stage's
start-up on a 40-record release (time ~ n^b; b near 1 is linear, near 2 quadratic: flagged
above 1.5), and the anonymous peak extrapolated linearly to 88,253 records (the whole CinC 2021 training set) against the 4 GB target. The
reference on this machine in the same run: a plain `wfdb.rdrecord` loop over the same
records, the cost of reading them at all.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from heartbeatai.data.domains import LAST_CHAPMAN_NUMBER
from heartbeatai.data.synthetic.domains import source_counts
from heartbeatai.ecg import LEADS

FS = 500
CINC_2021_RECORDS = 88_253
MEMORY_TARGET_MB = 4096
QUADRATIC_FLAG = 1.5
DUPLICATE_SHARE = 0.01
PROTOCOLS = ("lodo", "intra", "reference")
BASELINE_RECORDS = 40
REREALEASE_PREFIX = "E9"  # Georgia's prefix, numbers far above the release's own


def _lengths(domain: str, count: int, rng) -> np.ndarray:
    """Seconds per record: CPSC 2018's 6-60 s (most near 10-20 s), every other source 10 s."""
    if domain == "cpsc":
        return np.clip(rng.lognormal(np.log(14), 0.45, count), 6, 60)
    return np.full(count, 10.0)


def write_release(folder: Path, total: int, seed: int = 0, duplicate_share: float = DUPLICATE_SHARE) -> int:
    """Challenge-format records of the five sources in their CinC 2021 proportions; returns
    how many were written (re-releases included)."""
    rng = np.random.default_rng(seed)
    counts = source_counts()
    records = {d: c["records"] for d, c in counts.items()}
    share = {d: n / sum(records.values()) for d, n in records.items()}
    written, kept = 0, []
    for domain, fraction in share.items():
        n = max(1, round(total * fraction))
        rates = {code: counts[domain][code] / records[domain] for code in counts[domain] if code != "records"}
        out = folder / domain
        out.mkdir(parents=True, exist_ok=True)
        for i, seconds in enumerate(_lengths(domain, n, rng)):
            samples = int(seconds * FS)
            t = np.arange(samples) / FS
            phase = (t * rng.uniform(50, 110) / 60 + rng.uniform()) % 1.0
            beat = np.exp(-((phase - 0.3) ** 2) / 2.9e-4)[:, None] * rng.uniform(-1500, 1500, 12)
            val = (beat + rng.normal(0, 20, beat.shape)).astype(np.int16).T
            labels = [code for code, rate in rates.items() if rng.random() < rate] or ["426783006"]
            name = record_name(domain, i)
            _write(out, name, val, labels, gain=1000)
            if rng.random() < duplicate_share:
                kept.append((val, labels))
            written += 1
    # Re-releases: the same recording again as a Georgia record, at half the gain.
    for i, (val, labels) in enumerate(kept):
        _write(folder / "georgia", f"{REREALEASE_PREFIX}{i:05d}", val // 2, labels, gain=500)
        written += 1
    return written


def record_name(domain: str, i: int) -> str:
    """The name the source's own release gives its i-th record, so prepare finds its domain as
    in a real download (Chapman and Ningbo share JS, Ningbo's numbers after Chapman's)."""
    if domain == "ningbo":
        return f"JS{LAST_CHAPMAN_NUMBER + 1 + i:05d}"
    return f"{ {'cpsc': 'A', 'ptbxl': 'HR', 'georgia': 'E', 'chapman': 'JS'}[domain]}{i + 1:05d}"


def _write(folder: Path, name: str, val: np.ndarray, labels: list[str], gain: int) -> None:
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name} 12 {FS} {val.shape[1]} 05-May-2020 09:49:17"]
    lines += [f"{name}.mat 16+24 {gain}/mV 16 0 {val[k, 0]} 0 0 {lead}" for k, lead in enumerate(LEADS)]
    lines += ["#Age: 65", "#Sex: Female", f"#Dx: {','.join(labels)}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


# One stage in a fresh process: its wall time and the kernel's peak RSS of that process.
_DUPLICATES = """
import sys, numpy as np
from heartbeatai.data import signal_hash
from heartbeatai.data.group_splits import duplicate_groups
from heartbeatai.data.prepared import PreparedDataset
data = PreparedDataset(sys.argv[1])
sketches = [signal_hash.sketch(data.signal(row).astype(np.float32), data.fs) for row in range(len(data))]
groups = signal_hash.near_duplicate_groups(sketches)
components = duplicate_groups(data.records)
print(len(groups), len(set(components.tolist())))
"""


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, RssAnon) of a running process from /proc/<pid>/status, in MB; zeros once gone."""
    found = {"VmHWM:": 0.0, "RssAnon:": 0.0}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line.split(":")[0] + ":"
                if key in found:
                    found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["VmHWM:"], found["RssAnon:"]


def run_stage(argv: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, peak anonymous MB) of one child process, from the kernel's
    own accounting sampled every 20 ms.

    The peak RSS (VmHWM, the kernel's high-water mark) counts the pages of the memory-mapped
    shards a stage reads, which the kernel reclaims under pressure; the anonymous peak
    (RssAnon) is the memory a node must actually have.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        peak = anonymous = 0.0
        while child.poll() is None:
            hwm, anon = _memory_mb(child.pid)
            peak, anonymous = max(peak, hwm), max(anonymous, anon)
            time.sleep(0.02)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {text[-1500:]}")
    return wall, peak, anonymous


def measure(size: int, tmp: Path, workers: int) -> tuple[int, dict[str, tuple[float, float]], float]:
    raw, prepared = tmp / f"raw-{size}", tmp / f"prepared-{size}"
    written = write_release(raw, size)
    cli = [sys.executable, "-m", "heartbeatai"]
    started = time.perf_counter()
    for header in sorted(raw.rglob("*.hea")):
        wfdb.rdrecord(str(header.with_suffix("")))
    reference = time.perf_counter() - started
    stages = {"prepare": run_stage(cli + ["prepare", str(raw), "--out", str(prepared), "--fs", str(FS),
                                          "--workers", str(workers), "--quiet"]),
              "duplicate search": run_stage([sys.executable, "-c", _DUPLICATES, str(prepared)])}
    for protocol in PROTOCOLS:
        stages[f"folds {protocol}"] = run_stage(cli + ["data", "folds", str(prepared), "--protocol", protocol])
    stages["card"] = run_stage(cli + ["data", "card", str(prepared)])
    return written, stages, reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="1500,4500", help="comma-separated release sizes (at least two)")
    parser.add_argument("--workers", type=int, default=1, help="prepare workers (default 1: one process's peak)")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.records.split(",") if s.strip()})
    if len(sizes) < 2:
        parser.error("--records: give at least two sizes, for the growth exponent")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        # A tiny release: each stage's process start-up (interpreter, imports), taken off the growth.
        _, baseline, _ = measure(BASELINE_RECORDS, Path(scratch), args.workers)
        for size in sizes:
            written, stages, reference = measure(size, Path(scratch), args.workers)
            results[written] = stages
            print(f"{written} records ({size} asked; {FS} Hz, 12 leads): plain wfdb.rdrecord loop "
                  f"{written / reference:.0f} records/s (the reference)", flush=True)
            for stage, (wall, peak, anonymous) in stages.items():
                print(f"   {stage:<18} {wall:7.1f} s  {written / wall:7.0f} records/s  peak RSS {peak:6.0f} MB, "
                      f"anonymous {anonymous:6.0f} MB", flush=True)
    (small, first), (large, last) = sorted(results.items())[0], sorted(results.items())[-1]
    print(f"growth from {small} to {large} records, after the start-up a {BASELINE_RECORDS}-record release takes "
          f"(time ~ n^b; above {QUADRATIC_FLAG} flagged), and the anonymous peak extrapolated linearly to "
          f"{CINC_2021_RECORDS:,} records (target {MEMORY_TARGET_MB} MB):")
    over = []
    for stage in first:
        start_up = baseline[stage][0]
        work_small, work_large = first[stage][0] - start_up, last[stage][0] - start_up
        # Below its start-up the work is lost in the noise of starting a process: no exponent.
        readable = work_small > 0.5 * start_up and work_large > work_small
        exponent = math.log(work_large / work_small) / math.log(large / small) if readable else float("nan")
        slope = (last[stage][2] - first[stage][2]) / (large - small)
        at_full = last[stage][2] + max(slope, 0.0) * (CINC_2021_RECORDS - large)
        flag = "  QUADRATIC?" if exponent > QUADRATIC_FLAG else ""
        if at_full > MEMORY_TARGET_MB or flag:
            over.append(stage)
        shown = f"b = {exponent:4.2f}" if readable else "b   n/a (work under start-up: use larger --records)"
        print(f"   {stage:<18} {shown}{flag}   {1e3 * slope:+.2f} MB per 1,000 records; anonymous peak "
              f"at {CINC_2021_RECORDS:,}: {at_full:6.0f} MB")
    print(json.dumps({"sizes": sorted(results), "stages": list(first)}))
    print("scale benchmark: " + (f"MISSED for {', '.join(over)}" if over else "every stage within its targets"))
    return 0
