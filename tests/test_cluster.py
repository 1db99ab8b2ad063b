"""The cluster path, as far as one machine allows: the launcher file against Ray's schema, and
studies/ablation.py submitted as a Ray job to a local head started by the test."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing, suppress
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from heartbeatai.results import ResultsStore
from heartbeatai.study.resources import autoscaler_capacity
from heartbeatai.study.study_config import dump_study_config
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ray_cluster_yaml_is_valid_for_the_cluster_launcher():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cluster = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    jsonschema.validate(cluster, schema)
    assert cluster["provider"]["type"] in ("aws", "gcp")
    types = cluster["available_node_types"]
    assert types[cluster["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert any(t["resources"].get("GPU", 0) > 0 and t["max_workers"] > 0 for t in types.values())
    assert cluster["file_mounts"], "ray submit uploads only the script: the repository must be mounted"
    assert any("constraints.txt" in c and "pip install" in c for c in cluster["setup_commands"])
    # The study sizes its concurrency from these bounds on the head.
    capacity = autoscaler_capacity(cluster)
    assert capacity.total["GPU"] == min(cluster["max_workers"], types["gpu_worker"]["max_workers"])


def test_the_cluster_file_mounts_nothing_that_can_shadow_the_installed_package():
    """`ray submit` runs the script from the home folder, whose entries are on the driver's and the
    workers' paths: a mount there must have a name no `import` can take, and the package is a
    regular (non-editable) install that no namespace folder on a path can shadow."""
    cluster = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    for target in cluster["file_mounts"]:
        name = Path(target).name
        assert not name.isidentifier(), f"file mount {target} could be imported as a package"
    installs = [c for c in cluster["setup_commands"] if "pip install" in c and "constraints.txt" in c]
    assert installs and all(" -e " not in f" {c} " for c in installs)
    mount = next(iter(cluster["file_mounts"]))
    assert any(mount in c for c in installs)
    assert ".git" in cluster["rsync_exclude"]  # the commit travels in _build_commit.txt (make commit-stamp)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _session_pids(session: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, sid in (line.split() for line in out.splitlines()) if int(sid) == session]


def _listening_addresses(pids: list[int]) -> set[str]:
    """The local addresses of the TCP sockets these processes listen on (Linux /proc), with
    IPv4-mapped IPv6 addresses written as IPv4."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue  # it exited meanwhile
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host = local.split(":")[0]  # 32-bit words in host (little-endian) order
                packed = b"".join(int(host[i:i + 8], 16).to_bytes(4, "little") for i in range(0, len(host), 8))
                ip = ipaddress.ip_address(packed)
                addresses.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return addresses


def _wait_for(url: str, head: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if head.poll() is not None:
            output = head.stdout.read().decode(errors="replace") if head.stdout else ""
            raise AssertionError(f"the Ray head exited ({head.returncode}): {output[-3000:]}")
        try:
            with closing(urllib.request.urlopen(url, timeout=2)):
                return
        except urllib.error.HTTPError:
            return  # it answers (token authentication may refuse an anonymous request)
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer in {seconds} s")


@pytest.mark.slow
@pytest.mark.ray
def test_ablation_script_runs_as_a_ray_job_on_a_local_head(tmp_path):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    storage = tmp_path / "runs"
    config_file = tmp_path / "cluster-study.yaml"
    config_file.write_text(dump_study_config(tiny_study(data, storage, name="onjob")))

    ports = _free_ports(9)
    gcs, dashboard, client, agent, agent_grpc, metrics, node_manager, object_manager, runtime_env = ports
    # Ray refuses to start when a component's port falls inside the worker port range: draw the
    # range's start until none of the nine does (random free ports overlapped it about 1 run in 15).
    worker_low = _free_ports(1)[0]
    while any(worker_low <= port <= worker_low + 200 for port in ports):
        worker_low = _free_ports(1)[0]
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix sockets live under it
    # The head and the client share a token made here, never ~/.ray/auth_token: a fresh HOME has
    # none, and `ray get-auth-token --generate` would write one there (as Ray's own
    # _private/authentication_test_utils.py sets RAY_AUTH_TOKEN_PATH for its tests).
    token_file = tmp_path / "ray_auth_token"
    token_file.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    for inherited in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):  # RAY_AUTH_TOKEN would win over the path
        env.pop(inherited, None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
         "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
         "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
         "--metrics-export-port", str(metrics), "--node-manager-port", str(node_manager),
         "--object-manager-port", str(object_manager), "--runtime-env-agent-port", str(runtime_env),
         "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + 200),
         "--temp-dir", temp_dir, "--include-dashboard", "true"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        address = f"http://127.0.0.1:{dashboard}"
        _wait_for(f"{address}/api/version", head, 90)
        with pytest.raises(urllib.error.HTTPError) as refused:  # the head did take the token
            urllib.request.urlopen(f"{address}/api/jobs/", timeout=10).close()
        assert refused.value.code in (401, 403)
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--",
             sys.executable, str(REPO / "studies" / "ablation.py"), "--config", str(config_file),
             "--storage", str(storage)],
            env=env, capture_output=True, text=True, timeout=420,
        )
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-4000:] + job.stderr[-2000:]
        listening = _listening_addresses(_session_pids(head.pid))
        assert listening and listening <= {"127.0.0.1"}, f"the head listens beyond loopback: {listening}"
    finally:
        with suppress(ProcessLookupError):  # a head that exited by itself has no group left to signal
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for pid in _session_pids(head.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)

    store = ResultsStore(str(storage))
    tested = store.read("onjob", "fold_metrics", filters={"split": "test", "metric": "macro_auroc"})
    assert {"search", "full", "prevalence"} <= set(tested["arm"])
    assert store.read("onjob", "best_configs").shape[0] >= 1
