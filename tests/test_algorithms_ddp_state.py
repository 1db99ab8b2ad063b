"""Every registered algorithm under DDP (gloo, two CPU workers, each with its own records): its
step runs through DistributedDataParallel (IRM's autograd.grad in the logits' scale and Fishr's
torch.func gradients included), the workers end with the same weights, and state updated from
the batch (GroupDRO's q, Fishr's moving averages) stays the same on every rank."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from heartbeatai.config import TrialConfig
from heartbeatai.training.algorithms import ALGORITHMS
from heartbeatai.training.factory import algorithm_from_config, loss_from_config, model_from_config

N_CLASSES, N_DOMAINS, WORLD = 3, 3, 2
TINY = {"model.stem_width": 8, "model.widths": [8, 16], "model.depths": [1, 1], "optim.lr": 0.01,
        "optim.epochs": 1, "loss.kind": "bce", "algorithm.anneal_fraction": 0.34}  # step 1 of 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, kinds: list[str], out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        for kind in kinds:
            anneal = {k: v for k, v in TINY.items() if k != "algorithm.anneal_fraction"
                      or "anneal_fraction" in ALGORITHMS[kind].Params.model_fields}
            trial = TrialConfig().with_overrides({**anneal, "algorithm.kind": kind})
            torch.manual_seed(0)  # the same initial weights on both ranks, as DDP broadcasts them
            model = model_from_config(trial, N_CLASSES)
            loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32))
            algorithm = algorithm_from_config(trial, model, DistributedDataParallel(model), loss, steps_per_epoch=3,
                                              n_domains=N_DOMAINS, device=torch.device("cpu"))
            algorithm.train()
            rng = np.random.default_rng(100 + rank)  # each rank its own records, domain 2 on rank 1 only
            for _ in range(3):
                domains = rng.integers(0, N_DOMAINS - 1 + rank, 8)
                batch = {"x": torch.tensor(rng.normal(0, 1, (8, 12, 200)) * (1 + domains)[:, None, None],
                                           dtype=torch.float32),
                         "y": torch.tensor(rng.random((8, N_CLASSES)) < 0.4, dtype=torch.float32),
                         "domain": torch.from_numpy(domains)}
                scalars = algorithm.update(batch)
                assert all(torch.isfinite(v) for v in scalars.values()), (kind, scalars)
            state = algorithm.extra_state()
            out[(kind, rank)] = (torch.cat([p.detach().flatten() for p in model.parameters()]),
                                 {k: v for k, v in state.items() if torch.is_tensor(v)})
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_algorithm_keeps_the_workers_weights_and_state_identical_under_ddp():
    kinds = list(ALGORITHMS)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), kinds, out), nprocs=WORLD, join=True)
        out = dict(out)
    for kind in kinds:
        (weights_0, state_0), (weights_1, state_1) = out[(kind, 0)], out[(kind, 1)]
        torch.testing.assert_close(weights_0, weights_1, msg=f"{kind}: the workers' weights differ")
        for name in state_0:
            torch.testing.assert_close(state_0[name], state_1[name], msg=f"{kind}: {name} differs between ranks")
