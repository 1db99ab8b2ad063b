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


def _world() -> tuple[int, int] | None:
    """(rank, world size) under torch.distributed with more than one worker, else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return dist.get_rank(), dist.get_world_size()


class _GatherRows(torch.autograd.Function):
    """Every worker's rows, rank 0's first; the gradient of each worker's own rows is summed
    over the workers (every worker computes the same function of the gathered rows, so the sum
    is world x its gradient, and DDP's average of the parameters' gradients makes it exact)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: tuple[int, ...], rank: int) -> torch.Tensor:
        import torch.distributed as dist

        ctx.sizes, ctx.rank = sizes, rank
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))  # all_gather wants equal shapes
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        # all_reduce rather than reduce_scatter: gloo has no reduce_scatter, and these are a
        # batch's features or losses, small beside the gradients DDP reduces.
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start: start + ctx.sizes[ctx.rank]], None, None


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of `tensor` from every worker, concatenated in rank order (the worker's own
    where it runs alone), differentiable where `tensor` is: what a penalty over the whole
    global batch needs, where each worker holds a shard of it (CORAL, MMD, V-REx, IRM, Fishr)."""
    import torch.distributed as dist

    world = _world()
    if world is None:
        return tensor
    rank, size = world
    device = tensor.device  # NCCL gathers CUDA tensors; gloo, the tensors' own (CPU)
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(size)]
    dist.all_gather(counts, torch.tensor([len(tensor)], dtype=torch.long, device=device))
    sizes = tuple(int(c.item()) for c in counts)  # a batch's last shard may be shorter
    if tensor.requires_grad:
        return _GatherRows.apply(tensor, sizes, rank)
    with torch.no_grad():
        return _GatherRows.forward(_NoContext(), tensor, sizes, rank)


class _NoContext:
    """Stands in for autograd's ctx where nothing will be differentiated."""
