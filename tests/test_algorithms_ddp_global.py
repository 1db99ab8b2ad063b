"""The penalties over domains (CORAL, MMD, V-REx, IRM, Fishr) are taken over the global batch
under DDP: two gloo workers, each holding half of every batch, take exactly the steps one
process takes on the whole batches. Before distributed.gather_rows each worker aligned, or
compared, only its own half, so a study's result depended on its worker count.

The network is the penalty tests' TinyFeatureNet (no batch norm: a batch-norm layer normalises
each worker's half by its own statistics, which no penalty can make global). One spawn of two
workers runs every algorithm in turn; the reference runs here, in one process. Slow (about
35 s on 2 cores); the fast suite's tests/test_algorithms_ddp.py runs the same collectives
(every algorithm, two workers, identical ranks).
"""

from __future__ import annotations

import socket
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from heartbeatai.training.algorithms import ALGORITHMS

pytestmark = pytest.mark.slow
WORLD, STEPS, HALF = 2, 3, 6
GLOBAL_BATCH = [kind for kind, cls in ALGORITHMS.items() if cls.penalty_over_global_batch]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(kind: str, rank: int | None) -> torch.Tensor:
    """The weights after STEPS steps on the whole batches (rank None) or on `rank`'s half."""
    from torch.nn.parallel import DistributedDataParallel

    from test_algorithms_penalties import DOMAINS, TinyFeatureNet, batch_of, stub

    net = TinyFeatureNet()
    fields = {"algorithm.anneal_fraction": 0.1} if "anneal_fraction" in ALGORITHMS[kind].Params.model_fields else {}
    algorithm, _ = stub(kind, net, **fields)
    if rank is not None:
        algorithm.network = DistributedDataParallel(net)
    algorithm.train()
    for step in range(STEPS):
        batch = batch_of(DOMAINS, seed=step)
        if rank is not None:
            batch = {k: v[rank * HALF:(rank + 1) * HALF] for k, v in batch.items()}
        algorithm.update(batch)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def _worker(rank: int, port: int, out) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        for kind in GLOBAL_BATCH:
            out[(kind, rank)] = _steps(kind, rank)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed() -> dict:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
        return dict(out)


def test_the_global_batch_algorithms_are_the_penalty_ones():
    assert set(GLOBAL_BATCH) >= {"coral", "mmd", "vrex", "irm", "fishr"}


@pytest.mark.parametrize("kind", GLOBAL_BATCH)
def test_two_workers_with_half_batches_step_as_one_process_on_the_whole(distributed, kind):
    torch.set_num_threads(1)
    alone = _steps(kind, None)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed[(kind, rank)], alone, rtol=1e-5, atol=1e-6,
                                   msg=f"{kind}: rank {rank} after {STEPS} half-batch steps")
