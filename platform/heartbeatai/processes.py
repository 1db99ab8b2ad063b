"""Processes the platform starts die with the process that started them, even when it is killed.

Two mechanisms, both Linux-only (elsewhere they do nothing):

- `die_with_parent()`, for pool workers (prepare's): the kernel sends the child SIGKILL when
  its parent dies (prctl PR_SET_PDEATHSIG), so a killed `prepare` leaves no worker behind.
- `watch_descendants()`, for a study driver and the local Ray it starts: a small watcher
  process records the driver's descendants (Ray's GCS, raylet, dashboard, agents, workers)
  every second, and when the driver dies it stops those of them still alive, identified by
  pid *and* start time, so a recycled pid is never hit. Ray's raylet dies with the driver,
  but its DashboardAgent and RuntimeEnvAgent outlive a SIGKILLed driver. Only descendants of
  the driver are touched: another study's Ray, or a cluster this driver joined, never is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_watcher: subprocess.Popen | None = None


def die_with_parent() -> None:
    """In a child process: be killed when the parent dies (a pool initializer calls it)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of `root`."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
                started[int(entry)] = stat[1]
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in started and pid not in found:
            found[pid] = started[pid]
            todo.extend(children.get(pid, []))
    return found


def stop_processes(processes: dict[int, int], grace_s: float = 3.0) -> list[int]:
    """SIGTERM, then after `grace_s` SIGKILL, to each process still alive with its recorded start
    time; returns the pids signalled."""
    def alive() -> list[int]:
        return [pid for pid, start in processes.items() if (_proc_stat(pid) or (0, -1))[1] == start]

    hit = alive()
    for pid in hit:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
    for pid in alive():
        _signal(pid, signal.SIGKILL)
    return hit


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def watch_descendants() -> None:
    """Start (once per process) the watcher that stops this process's descendants when it dies."""
    global _watcher
    if _watcher is not None or not sys.platform.startswith("linux"):
        return
    # Its own session: a signal to the driver's process group (a terminal's Ctrl-C, a test's
    # killpg) leaves it to clean up after the driver.
    _watcher = subprocess.Popen([sys.executable, "-m", "heartbeatai.processes", str(os.getpid())],
                                stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _watch(driver: int, period_s: float = 1.0) -> None:
    me = os.getpid()
    seen: dict[int, int] = {}
    while os.getppid() == driver:  # re-parented once the driver is gone
        for pid, start in descendants(driver).items():
            if pid != me:
                seen[pid] = start
        time.sleep(period_s)
    for pid in list(seen):  # what the orphans started meanwhile
        seen.update(descendants(pid))
    seen.pop(me, None)
    stop_processes(seen)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the watcher outlives the driver's Ctrl-C
    _watch(int(sys.argv[1]))
