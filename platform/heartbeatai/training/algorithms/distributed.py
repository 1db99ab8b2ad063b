"""Collectives an algorithm's own state needs under DDP, no-ops in a one-process run.

DDP synchronises gradients, nothing else: state an algorithm updates from the batch
(GroupDRO's domain weights, Fishr's moving averages) would drift apart on the workers, each
seeing its own share of the batch, and the checkpoint keeps rank 0's only. Updating such
state from sums over all workers keeps it identical on every rank.
"""

from __future__ import annotations

import torch


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over the workers, detached (what it updates is state, not the objective);
    `t` itself, detached, when torch.distributed is not initialised."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return t.detach()
    total = t.detach().clone()
    dist.all_reduce(total)
    return total
