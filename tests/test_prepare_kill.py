"""A killed `prepare` leaves none of its pool workers behind (they die with it: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from heartbeatai.processes import descendants

HEARTBEATAI = str(Path(sys.executable).with_name("heartbeatai"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_prepare_leaves_no_pool_worker(tmp_path):
    raw = tmp_path / "raw"
    subprocess.run([HEARTBEATAI, "synth", "--out", str(raw), "--records", "400", "--fs", "500", "--seconds", "20",
                    "--workers", "1"], check=True, capture_output=True, timeout=600)
    prepare = subprocess.Popen([HEARTBEATAI, "prepare", str(raw), "--out", str(tmp_path / "prepared"), "--workers", "2",
                                "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: dict[int, int] = {}
    while len(workers) < 2:
        assert prepare.poll() is None, "prepare ended before its pool started"
        assert time.monotonic() < deadline, "no pool workers seen"
        workers = descendants(prepare.pid)
        time.sleep(0.1)
    os.kill(prepare.pid, signal.SIGKILL)
    prepare.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid, start) for pid, start in workers.items()):
        assert time.monotonic() < deadline, f"pool workers left: {sorted(workers)}"
        time.sleep(0.2)


def _alive(pid: int, start: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text[text.rindex(")") + 2:].split()
    return fields[0] != "Z" and int(fields[19]) == start
