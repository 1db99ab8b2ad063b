"""Synthetic benchmark speed: records per second per core, in memory and written to disk.

`python -m benchmarks synth [--records N] [--fs 500] [--seconds 10]` generates N
records of the default four domains in one process (one core: BLAS held to one
thread) and prints records/s for generation alone and for generation plus writing the
challenge-format files. The target (issue 3) is >= 500 records/s per core for 10 s,
500 Hz, 12-lead records. The reference line times numpy's own normal draws for the same
number of samples, so a figure can be judged against how busy the machine was.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from heartbeatai.data.synthetic import generate, write_benchmark

TARGET_PER_CORE = 500.0


def _rate(n: int, fn) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks synth", description=__doc__)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--fs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    n = args.records
    generate(8, fs=args.fs, seconds=args.seconds)  # warm caches (filter designs, imports)

    rng = np.random.default_rng(0)
    samples = int(args.fs * args.seconds)
    with threadpool_limits(1):
        reference = _rate(n, lambda: [rng.standard_normal((samples, 12)) for _ in range(n)])
    in_memory = _rate(n, lambda: generate(n, fs=args.fs, seconds=args.seconds, seed=1))
    with tempfile.TemporaryDirectory() as tmp:
        written = _rate(n, lambda: write_benchmark(tmp, n, fs=args.fs, seconds=args.seconds, seed=1))

    status = "meets" if in_memory >= TARGET_PER_CORE else "MISSES"
    print(f"synthetic records ({args.seconds:g} s, {args.fs} Hz, 12 leads, 4 domains, 1 core, N={n}):")
    print(f"  generate (in memory)      {in_memory:8.0f} records/s   {status} the {TARGET_PER_CORE:.0f}/s target")
    print(f"  generate + write .hea/.mat {written:7.0f} records/s")
    print(f"  reference: numpy normal draws of one record's size {reference:8.0f} /s")
    print(f"  20,000 records on one core: {20000 / in_memory:.0f} s to generate, {20000 / written:.0f} s to write")
    return 0
