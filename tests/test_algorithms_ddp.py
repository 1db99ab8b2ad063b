"""Every registered algorithm under DDP, as the loop runs it: two gloo workers on CPU, each
with its own initial weights and its own batches, end with the same network, the same extra
trained modules (a discriminator) and the same predicting network (an average, its
batch-norm statistics refreshed), all finite. Parametrised over the registry, so an
algorithm is run distributed the day it is registered.

Starting a worker costs seconds (torch, the factory's imports) where an algorithm's steps
cost a fraction of one, so one spawn of two workers runs every selected algorithm, in order,
each from fresh weights; a worker stops at the first failure, and every algorithm that
failure kept from running is then run in a spawn of its own, so one broken algorithm fails
its own test only.
"""

from __future__ import annotations

import json
import socket
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from heartbeatai.training.algorithms import ALGORITHMS

WORLD, STEPS = 2, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(algorithm) -> torch.Tensor:
    """What must agree across ranks: everything trained, and what predicts."""
    tensors = [*algorithm.trainable().parameters(), *algorithm.predict_network().parameters()]
    if algorithm.predict_network() is not algorithm.model:
        # Its own batch-norm statistics (the live network's are each rank's own under DDP).
        tensors += [b for b in algorithm.predict_network().buffers() if b.is_floating_point()]
    return torch.cat([t.detach().flatten() for t in tensors])


def _train_distributed(kind: str, rank: int) -> None:
    import numpy as np
    from torch.nn.parallel import DistributedDataParallel

    from heartbeatai.training.factory import algorithm_from_config, loss_from_config, model_from_config
    from test_algorithms import N_CLASSES, N_DOMAINS, toy_batches, trial_of

    trial = trial_of(kind)
    torch.manual_seed(rank)  # the loop seeds each rank apart: DDP must start them from rank 0's weights
    model = model_from_config(trial, N_CLASSES)
    network = DistributedDataParallel(model)  # as loop._distributed on CPU
    loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32))
    algorithm = algorithm_from_config(trial, model, network, loss, steps_per_epoch=STEPS, n_domains=N_DOMAINS,
                                      device=torch.device("cpu"))
    batches = toy_batches(STEPS, seed=100 + rank)  # each rank its own shard
    algorithm.train()
    for batch in batches:
        algorithm.update(batch)
    algorithm.before_validation(iter(batches))
    state = _state(algorithm)
    gathered = [torch.empty_like(state) for _ in range(WORLD)]
    dist.all_gather(gathered, state)
    assert torch.isfinite(state).all(), f"non-finite weights on rank {rank}"
    assert torch.equal(gathered[0], gathered[1]), (
        f"ranks differ after {STEPS} steps (largest difference {float((gathered[0] - gathered[1]).abs().max()):.3g})")


def _worker(rank: int, port: int, kinds: list[str], out: str) -> None:
    """Run `kinds` in order; after each, write kind -> "ok" or the traceback to out/rank-<rank>.json."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=30))
    outcomes = {}
    try:
        for kind in kinds:
            try:
                _train_distributed(kind, rank)
                outcomes[kind] = "ok"
            except Exception:
                outcomes[kind] = traceback.format_exc()
                break  # the other rank may be waiting in a collective: stop sharing the group
            finally:
                Path(out, f"rank-{rank}.json").write_text(json.dumps(outcomes))
    finally:
        dist.destroy_process_group()


def run_under_ddp(kinds: list[str], out: Path) -> dict[str, str]:
    """kind -> "ok" or what failed (on either rank); kinds a failure kept from running are left out."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        mp.spawn(_worker, args=(_free_port(), kinds, str(out)), nprocs=WORLD, join=True)
    except mp.ProcessExitedException:
        pass  # a worker died outright: what it wrote before stands, the rest is retried alone
    ranks = [json.loads(p.read_text()) if p.exists() else {} for p in (out / f"rank-{r}.json" for r in range(WORLD))]
    outcomes = {}
    for kind in kinds:
        if all(kind in o for o in ranks):
            failures = [f"rank {r}: {o[kind]}" for r, o in enumerate(ranks) if o[kind] != "ok"]
            outcomes[kind] = "\n".join(failures) or "ok"  # every rank's: the root cause may be on either
    return outcomes


@pytest.fixture(scope="module")
def registry_under_ddp(request, tmp_path_factory) -> dict[str, str]:
    """The selected algorithms (all of them under `-m slow`, erm alone in the fast suite), one spawn."""
    test = test_every_algorithm_keeps_two_ddp_workers_identical.__name__
    selected = {item.callspec.params["kind"] for item in request.session.items if item.originalname == test}
    return run_under_ddp([k for k in ALGORITHMS if k in selected], tmp_path_factory.mktemp("ddp"))


# Starting the two workers is most of the cost (about 6 s on two idle cores, erm alone); the
# whole registry in the same spawn about 10 s and growing, so the rest is `slow`.
@pytest.mark.parametrize("kind", [pytest.param(k, marks=() if k == "erm" else pytest.mark.slow) for k in ALGORITHMS])
def test_every_algorithm_keeps_two_ddp_workers_identical(kind, registry_under_ddp, tmp_path):
    outcome = registry_under_ddp.get(kind)
    if outcome is None:  # an earlier algorithm's failure stopped the shared run before this one
        outcome = run_under_ddp([kind], tmp_path).get(kind, "the workers died before reporting")
    assert outcome == "ok", f"{kind} under DDP:\n{outcome}"
