"""A study on a Ray cluster of three nodes on loopback (issue 26): its trials land on more than
one node, and once it has finished no placement group is left holding resources (ASHA stops a
trial mid-run: Ray #54305 leaked those); a worker node killed mid-study is survived.

The nodes are Ray's own multi-node test harness (`ray.cluster_utils.Cluster`): a head and two
worker nodes, each its own raylet, object store and temp folder, 1 CPU each and bound to
127.0.0.1, so a trial's single training worker fits one node only and concurrent trials must
spread. The harness stops the processes it started. The study is the smoke config, run by the
command line with RAY_ADDRESS naming the head, as `ray submit` runs it on a real cluster.
Slow: about a minute each on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from heartbeatai.results import ResultsStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "studies" / "configs" / "smoke.yaml"
HEARTBEATAI = str(Path(sys.executable).with_name("heartbeatai"))
NODES = 3


@pytest.fixture
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    loopback = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    harness = Cluster(initialize_head=True, head_node_args=loopback)
    try:
        for _ in range(NODES - 1):
            harness.add_node(**loopback)
        harness.wait_for_nodes()
        yield harness
    finally:
        harness.shutdown()


def test_a_study_spreads_its_trials_over_the_nodes_and_leaves_no_placement_group(cluster, tmp_path):
    import ray

    storage = tmp_path / "runs"
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run([HEARTBEATAI, "study", "run", str(SMOKE), "--storage", str(storage)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    trials = ResultsStore(str(storage)).read("smoke", "trials").drop_duplicates("trial_id", keep="last")
    trained = trials[trials["status"].isin(["completed", "early_stopped"])]
    ray.init(address=cluster.address, logging_level="ERROR")
    try:
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert trained["node_id"].notna().all(), trained[["trial_id", "node_id"]]
        assert set(trained["node_id"]) <= nodes
        assert trained["node_id"].nunique() >= 2, trained[["trial_id", "arm", "node_id"]]
        left = {pg_id: pg["state"] for pg_id, pg in ray.util.placement_group_table().items()
                if pg["state"] != "REMOVED"}
        assert not left, f"placement groups still held after the study: {left}"
        assert ray.available_resources().get("CPU", 0) == pytest.approx(NODES)
    finally:
        ray.shutdown()


def test_a_worker_node_killed_mid_study_is_survived(cluster, tmp_path):
    """The node a search trial trains on is killed (its raylet and workers, ungracefully) once the
    trial has reported an epoch: Tune retries the trial on the nodes left (max_failures 1) and the
    study ends with every stage done and every trial finished."""
    import time

    storage = tmp_path / "runs"
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_USAGE_STATS_ENABLED": "0"}
    study = subprocess.Popen([HEARTBEATAI, "study", "run", str(SMOKE), "--storage", str(storage)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = {node.node_id: node for node in cluster.worker_nodes}
    killed = victim = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and study.poll() is None:
            if (storage / "smoke" / "results" / "trials").is_dir():
                trials = ResultsStore(str(storage)).read("smoke", "trials").drop_duplicates("trial_id", keep="last")
                running = trials[(trials["status"] == "running") & trials["node_id"].isin(list(workers))]
                if len(running):
                    killed, victim = running["node_id"].iloc[0], running["trial_id"].iloc[0]
                    cluster.remove_node(workers[killed], allow_graceful=False)
            time.sleep(0.2)
        output, _ = study.communicate(timeout=900)
    finally:
        if study.poll() is None:
            study.kill()
    assert killed is not None, "no trial was seen running on a worker node"
    assert study.returncode == 0, output[-4000:]
    trials = ResultsStore(str(storage)).read("smoke", "trials").drop_duplicates("trial_id", keep="last")
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["trial_id", "status", "error"]]
    assert {"full", "no-se", "search"} <= set(trials["arm"])
    # The trial caught mid-run ended on a node that lived: it was retried there.
    retried = trials.set_index("trial_id").loc[victim]
    assert retried["node_id"] != killed and retried["status"] in ("completed", "early_stopped"), retried
    tested = ResultsStore(str(storage)).read("smoke", "fold_metrics", filters={"split": "test", "selection": "val"})
    assert {"search", "full", "no-se", "prevalence"} <= set(tested["arm"])
