"""Torch threads outside Ray: the usable cores less the busy ones (benchmarks/bench_train_threads.py)."""

from __future__ import annotations

import os

import pytest

from heartbeatai import cli
from heartbeatai.training import threads


@pytest.mark.parametrize(("cores", "load", "expected"), [
    (2, 3.8, 1),    # the shared development machine: one thread, 7x faster than torch's two
    (2, 0.3, 2),
    (16, 0.2, 16),
    (16, 4.6, 11),
    (4, 40.0, 1),   # never below one
])
def test_the_default_leaves_the_cores_other_work_keeps_busy(cores, load, expected):
    assert threads.idle_cores(cores, load) == expected


def test_usable_cores_follow_the_affinity_and_a_cgroup_quota(tmp_path, monkeypatch):
    assert 1 <= threads.usable_cores() <= len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 CPUs
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    assert threads.usable_cores() == 1
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("command", [
    ["train", "--config", "run.yaml", "--out", "out"],
    ["evaluate", "--run", "run.yaml", "--checkpoint", "ckpt", "--data", "data", "--out", "out"],
    ["explain", "--checkpoint", "ckpt", "--data", "data", "--record", "R1", "--out", "out"],
    ["export", "runs/study", "--out", "out", "--check"],
    ["study", "plan", "config.yaml"],
])
def test_every_torch_command_takes_threads(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command[0], "--help"] if command[0] != "study" else ["study", "plan", "--help"])
    assert "--threads" in capsys.readouterr().out


def test_zero_threads_is_one_line(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    with pytest.raises(Exception) as error:
        threads.apply_threads(0)
    assert "--threads: at least 1, got 0" in str(error.value)
    assert torch.get_num_threads() == before
