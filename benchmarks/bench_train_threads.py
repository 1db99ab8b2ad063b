"""`heartbeatai train` per epoch under torch's own thread count and under the CLI's default.

    .venv/bin/python -m benchmarks train_threads [--records 400] [--epochs 3] [--rounds 2]

Outside Ray, torch runs one OpenMP thread per core this process may use. On cores that
other work keeps busy, each operator's threads wait at a barrier for the one that was
descheduled, spinning meanwhile, so the epoch of a small model takes many times longer than
with one thread. The CLI's default (heartbeatai/training/threads.py) is the usable cores
less those the load average says are busy. Each setting trains the same run file (the demo
study's network on a synthetic benchmark) in its own process, settings interleaved round
after round, so the neighbours' load falls on each alike; the figure is the median epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DEMO_TRIAL = {
    "model": {"stem_width": 16, "widths": [16, 32, 64], "depths": [1, 1, 1], "stem_kernel": 7, "kernel": 5,
              "se_reduction": 4, "concentration_stages": [1, 2]},
    "mixstyle": {"layers": [1, 2]},
    "preprocess": {"crop_seconds": 5.0, "eval_stride_seconds": 2.5},
    "optim": {"lr": 0.005, "batch_size": 32},
}


def prepare_data(folder: Path, records: int) -> Path:
    from heartbeatai.data.folds import write_folds
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.synthetic import write_benchmark

    raw = write_benchmark(folder / "raw", records, fs=100, seconds=10.0, seed=0)
    prepared = folder / "prepared"
    prepare([Path(raw)], prepared, PrepareSettings(fs=100, max_seconds=10.0), progress=False)
    write_folds(prepared, "lodo")
    return prepared


def epoch_seconds(run_file: Path, out: Path, epochs: int, threads: int | None) -> list[float]:
    command = [sys.executable, "-m", "heartbeatai.cli", "train", "--config", str(run_file), "--out", str(out),
               "--epochs", str(epochs)] + ([] if threads is None else ["--threads", str(threads)])
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    history = json.loads((out / "metrics.json").read_text())["epochs"]
    return [float(m["epoch_seconds"]) for m in history]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks train_threads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from heartbeatai.training.threads import idle_cores, usable_cores

    cores = usable_cores()
    print(f"usable cores {cores}; torch's own default {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}; the CLI's default now: {idle_cores()} thread(s)")
    settings = {f"torch's default ({torch.get_num_threads()} threads, before)": torch.get_num_threads(),
                "heartbeatai train default": None, "1 thread": 1}
    times: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        folder = Path(tmp)
        prepared = prepare_data(folder, args.records)
        run_file = folder / "run.yaml"
        run_file.write_text(yaml.safe_dump({"data": {"path": str(prepared)}, "fold_id": "lodo:georgia",
                                            "classes": ["AF", "RBBB", "NSR", "SB", "TAb", "LAD"],
                                            "trial": DEMO_TRIAL}))
        for round_ in range(args.rounds):
            for name, threads in settings.items():
                seconds = epoch_seconds(run_file, folder / f"out-{round_}-{threads}", args.epochs, threads)
                times[name] += seconds
                print(f"round {round_ + 1} {name}: " + ", ".join(f"{s:.2f}" for s in seconds) + " s per epoch",
                      flush=True)
    print(f"\nmedian seconds per epoch, {args.records} records, demo network, {args.rounds} x {args.epochs} epochs "
          f"(load average now {os.getloadavg()[0]:.2f}):")
    reference = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<40} {median:6.2f} s  ({reference / median:.1f}x torch's default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
