"""Joining a cluster is decided by RAY_ADDRESS or a head that answers, never by a stale file;
the cluster's size comes from a live autoscaler, never from a leftover launcher config."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from heartbeatai.study import ray_start
from heartbeatai.study.resources import launcher_config_path, node_group_capacity

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = {"max_workers": 8, "head_node_type": "head", "available_node_types": {
    "head": {"resources": {"CPU": 8, "GPU": 0}, "max_workers": 0},
    "gpu_worker": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 8}}}


def _session_pids(session: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, sid in (line.split() for line in out.splitlines()) if int(sid) == session]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stale(tmp_path, monkeypatch):
    """A temp HOME with a launcher's ray_bootstrap_config.yaml and a Ray temp dir whose
    ray_current_cluster names a head that has gone (never the real ~ or /tmp/ray)."""
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    (temp / "ray").mkdir(parents=True)
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(LAUNCHER))
    (temp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_free_port()}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return home, temp


def test_a_stale_recorded_head_is_not_joined(stale):
    assert ray_start.recorded_head() is not None
    assert ray_start.cluster_address() is None and not ray_start.joining_cluster()


def test_a_recorded_head_that_answers_is_joined(stale):
    _, temp = stale
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        (temp / "ray" / "ray_current_cluster").write_text(address)
        assert ray_start.cluster_address() == address


def test_ray_address_decides_whatever_the_files_say(stale, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_start.cluster_address() == "10.0.0.5:6379"


def _process(proc: Path, pid: int, *argv: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_a_leftover_launcher_config_sizes_nothing_without_a_live_monitor(stale, tmp_path):
    home, _ = stale
    assert (home / "ray_bootstrap_config.yaml").is_file()
    proc = tmp_path / "proc"
    _process(proc, 10, "/usr/bin/python", "something_else.py")
    # A monitor of another cluster's GCS, and one with no autoscaling config (a plain ray.init()).
    _process(proc, 11, "python", "/x/ray/autoscaler/v2/monitor.py", "--gcs-address=127.0.0.1:7000",
             "--autoscaling-config=~/ray_bootstrap_config.yaml")
    _process(proc, 12, "python", "/x/ray/autoscaler/_private/monitor.py", "--gcs-address=127.0.0.1:6379")
    assert launcher_config_path("127.0.0.1:6379", proc=proc) is None


@pytest.mark.parametrize("monitor", ["autoscaler/v2/monitor.py", "autoscaler/_private/monitor.py"])
def test_the_live_monitor_of_the_joined_gcs_names_the_config_it_reads(stale, tmp_path, monitor):
    home, _ = stale
    proc = tmp_path / "proc"
    _process(proc, 4242, "/usr/bin/python3", f"/site/ray/{monitor}", "--logs-dir=/tmp/x",
             "--gcs-address=10.0.0.1:6379", "--autoscaling-config=~/ray_bootstrap_config.yaml")
    assert launcher_config_path("10.0.0.1:6379", proc=proc) == home / "ray_bootstrap_config.yaml"


def test_gcs_node_groups_give_the_bounds_capped_by_the_cluster_maximum():
    capacity = node_group_capacity([({"CPU": 8}, 1), ({"CPU": 8, "GPU": 1}, 10), ({"CPU": 64}, 0)], {"GPU": 4})
    assert capacity.total == {"CPU": 88.0, "GPU": 4.0} and capacity.largest_node == {"CPU": 8, "GPU": 1}
    assert node_group_capacity([({"CPU": 4}, 0)]) is None


def test_a_working_directory_holding_a_heartbeatai_folder_is_seen_as_shadowing(tmp_path):
    assert ray_start.shadowing_folder(tmp_path) is None
    (tmp_path / "heartbeatai").mkdir()
    assert ray_start.shadowing_folder(tmp_path) == tmp_path / "heartbeatai"
    import heartbeatai

    installed_root = Path(heartbeatai.__file__).resolve().parent.parent
    assert ray_start.shadowing_folder(installed_root) is None


@pytest.mark.slow  # starts a local Ray (14 s); the smoke study starts one in the fast suite
@pytest.mark.ray
def test_a_local_study_ray_ignores_stale_files_and_sizes_from_what_it_has(stale, tmp_path):
    """In a child process: HOME and Ray's temp dir are the fixture's, the Ray it starts is its own."""
    code = (
        "from heartbeatai.study.ray_start import prefer_loopback, ensure_ray\n"
        "prefer_loopback()\n"
        "import json, os, ray\n"
        "from heartbeatai.study.resources import cluster_capacity\n"
        "ensure_ray()\n"
        "c = cluster_capacity()\n"
        "print(json.dumps({'total': c.total, 'loopback': os.environ.get('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER')}))\n"
        "ray.shutdown()\n"
    )
    short = Path(tempfile.mkdtemp(prefix="hbt", dir="/tmp"))  # Ray's unix sockets need a short path
    (short / "ray").mkdir()
    (short / "ray" / "ray_current_cluster").write_text(ray_start.recorded_head())  # the same stale head
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(short))
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=240)
    finally:  # whatever the child's Ray left running in its session, by process id
        child.kill()
        for pid in _session_pids(child.pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(short, ignore_errors=True)
    assert child.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["loopback"] == "0"  # a local Ray of its own, on loopback
    assert result["total"]["CPU"] <= os.cpu_count() and result["total"].get("GPU", 0) == 0  # not 8 GPU nodes
