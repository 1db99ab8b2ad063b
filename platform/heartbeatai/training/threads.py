"""How many threads torch gets in a command run outside Ray (`train`, `evaluate`, `explain`, ...).

Inside a study Ray sets each trial's thread count from the CPUs it was given. Outside, torch
takes one OpenMP thread per core it sees; on cores that other work keeps busy that is the
slowest choice there is: OpenMP's threads spin at every barrier of every operator, the
thread that is descheduled holds up the others, and a tiny model's epoch took 5.8-9.0 s on
2 shared cores against 0.8 s with one thread (`python -m benchmarks train_threads` shows
both in one run). So the default is the cores this process may use (its CPU affinity and
cgroup quota) less those that other work keeps busy (the 1-minute load average), and at
least one; `--threads N` sets it. Results on CPU repeat exactly at a fixed thread count
only: pass `--threads 1` to rerun a study trial's numbers (its trials run one thread each).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def idle_cores(cores: int | None = None, load: float | None = None) -> int:
    """Usable cores less the ones the 1-minute load average says are busy; at least 1."""
    cores = usable_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads (default: the cores this process may use that other work "
                             "leaves idle, at least 1; results repeat exactly at one thread count)")


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: `idle_cores()`); returns the count set."""
    if threads is not None and threads < 1:
        raise ValueError(f"--threads: at least 1, got {threads}")
    import torch

    count = idle_cores() if threads is None else threads
    torch.set_num_threads(count)
    return count


def apply_threads(threads: int | None) -> int:
    """A command's `--threads`, set before torch does any work and printed; bad values are one line."""
    from heartbeatai.cli import UserError

    try:
        count = set_torch_threads(threads)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"torch threads: {count}" + ("" if threads else " (--threads to set)"), flush=True)
    return count
