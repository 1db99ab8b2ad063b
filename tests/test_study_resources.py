"""Trial resources and concurrency: trials never wait on workers that cannot start."""

from __future__ import annotations

import pytest

from heartbeatai.study.resources import (
    Capacity,
    ResourceError,
    autoscaler_capacity,
    max_concurrent_trials,
    plan_trial_resources,
)

LAPTOP = Capacity(total={"CPU": 2.0}, largest_node={"CPU": 2.0})


def test_in_process_trials_take_one_cpu_each_on_a_laptop():
    res = plan_trial_resources(1, 0.0, None, LAPTOP)
    assert res.in_process and res.driver_request() == {"CPU": 1.0, "GPU": 0.0}
    assert max_concurrent_trials(res, LAPTOP) == 2


def test_ddp_trials_hold_a_token_driver_cpu_and_share_the_rest():
    res = plan_trial_resources(2, 0.0, None, LAPTOP)
    assert res.driver_request()["CPU"] == pytest.approx(0.01)
    assert res.total()["CPU"] <= 2.0
    # Two DDP trials would each hold a driver while their workers wait forever: one at a time.
    assert max_concurrent_trials(res, LAPTOP) == 1


def test_gpu_cluster_concurrency_comes_from_gpus():
    cluster = Capacity(total={"CPU": 8 * 16.0, "GPU": 64.0}, largest_node={"CPU": 16.0, "GPU": 8.0})
    assert max_concurrent_trials(plan_trial_resources(2, 1.0, 1.0, cluster), cluster) == 32  # 64 GPUs / 2
    # CPU-bound when workers ask for more CPUs: 128 / (2 x 4 + 0.01 for the driver).
    assert max_concurrent_trials(plan_trial_resources(2, 1.0, 4.0, cluster), cluster) == 15


def test_a_trial_that_can_never_fit_is_an_error_before_anything_starts():
    with pytest.raises(ResourceError, match="GPU"):
        plan_trial_resources(1, 1.0, None, LAPTOP)
    with pytest.raises(ResourceError, match="CPU"):
        plan_trial_resources(1, 0.0, 4.0, LAPTOP)
    with pytest.raises(ResourceError):
        plan_trial_resources(4, 0.0, 1.0, LAPTOP)


def test_autoscaler_bounds_give_the_cluster_at_its_largest():
    cluster = {
        "max_workers": 6,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 4}, "max_workers": 0},
            "gpu": {"resources": {"CPU": 8, "GPU": 1}, "min_workers": 0, "max_workers": 10},
        },
    }
    capacity = autoscaler_capacity(cluster)
    assert capacity.total == {"CPU": 4 + 6 * 8, "GPU": 6}
    assert capacity.largest_node == {"CPU": 8, "GPU": 1}
    res = plan_trial_resources(1, 1.0, 4.0, capacity)
    assert max_concurrent_trials(res, capacity) == 6
