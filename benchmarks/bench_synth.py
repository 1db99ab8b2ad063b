"""Synthetic benchmark speed: records per second per core, in memory and written to disk.

`python -m benchmarks synth [--records N] [--fs 500] [--seconds 10]` generates N
records of the default four domains in one process (one core: BLAS held to one
thread) and prints records/s for generation alone and for generation plus writing the
challenge-format files. The target (issue 3) is >= 500 records/s per core for 10 s,
500 Hz, 12-lead records. "Per core" is records per CPU-second of this process, which a
shared machine does not distort the way it distorts wall-clock time; both are printed,
with a reference (numpy's normal draws of one record's size) timed the same way.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from heartbeatai.data.synthetic import generate, write_benchmark

TARGET_PER_CORE = 500.0


def _rates(n: int, fn) -> tuple[float, float]:
    """(per CPU-second, per wall-second) rates of n items done by fn()."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


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
        reference = _rates(n, lambda: [rng.standard_normal((samples, 12)) for _ in range(n)])
    in_memory = _rates(n, lambda: generate(n, fs=args.fs, seconds=args.seconds, seed=1))
    with tempfile.TemporaryDirectory() as tmp:
        written = _rates(n, lambda: write_benchmark(tmp, n, fs=args.fs, seconds=args.seconds, seed=1))

    status = "meets" if in_memory[0] >= TARGET_PER_CORE else "MISSES"
    print(f"synthetic records ({args.seconds:g} s, {args.fs} Hz, 12 leads, 4 domains, 1 process, N={n}):")
    print("                                  per CPU-second   per wall-second")
    for name, (cpu, wall) in [("generate (in memory)", in_memory), ("generate + write .hea/.mat", written),
                              ("reference: numpy normal draws", reference)]:
        print(f"  {name:30s} {cpu:12.0f}   {wall:14.0f}")
    print(f"  per-core generation {status} the {TARGET_PER_CORE:.0f} records/s target; 20,000 records take "
          f"{20000 / in_memory[0]:.0f} CPU-s to generate, {20000 / written[0]:.0f} CPU-s with writing")
    return 0
