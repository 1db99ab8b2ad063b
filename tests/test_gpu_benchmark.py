"""The GPU check skips in one line without a GPU, and runs every section on the CPU in its dry run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", "gpu", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_without_a_gpu_the_check_says_so_in_one_line_and_succeeds():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the check runs for real")
    done = _run(timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("===")]
    assert len(lines) == 1 and lines[0].startswith("gpu check skipped: no CUDA device here")


@pytest.mark.slow
def test_the_dry_run_runs_every_section_on_the_cpu():
    done = _run("--cpu-dry-run", "--budget-s", "3000", timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "every section ran" in done.stdout
    for section in range(1, 7):
        assert f"\n{section}. " in done.stdout
    assert "every CPU and GPU available, 0 placement group(s) left" in done.stdout
