"""A study on a Ray cluster of three nodes on loopback (issue 26): its trials land on more than
one node, and once it has finished no placement group is left holding resources (ASHA stops a
trial mid-run: Ray #54305 leaked those).

The nodes are Ray's own multi-node test harness (`ray.cluster_utils.Cluster`): a head and two
worker nodes, each its own raylet, object store and temp folder, 1 CPU each and bound to
127.0.0.1, so a trial's single training worker fits one node only and concurrent trials must
spread. The harness stops the processes it started. The study is the smoke config, run by the
command line with RAY_ADDRESS naming the head, as `ray submit` runs it on a real cluster.
Slow: about two minutes on 2 cores.
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
