"""Weight averaging, shared by EMA (ema.py) and SWA (swa.py): ERM's step, and an average of
the weights the steps visit as the network that predicts.

The averaged copy is a `torch.optim.swa_utils.AveragedModel` of the network, updated after
each step once averaging has started; only parameters are averaged (`use_buffers=False`).
An average of weights is not a network whose batch-norm statistics anyone measured, so
before each validation (and so before each checkpoint and export) the averaged network's
statistics are recomputed on up to `bn_batches` training batches (Izmailov et al. 2018,
`swa_utils.update_bn`): every batch-norm layer in training mode with a cumulative average
(momentum None), everything else in evaluation mode, so dropout and MixStyle draw nothing
and the statistics are those of the activations the network meets when it predicts. Under
DDP each rank measures its own shard and the statistics are averaged over the ranks.

Checkpoint: `model` is what predicts (the averaged network, statistics refreshed; the live
network until averaging starts); the live weights and the averaging counters are this
algorithm's own entries, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams


class AveragingParams(AlgorithmParams):
    # Not a searched hyperparameter: a bound on the cost of the refresh (update_bn's own
    # default is the whole loader).
    bn_batches: int = hparam(100, ge=1)
    multilabel: ClassVar[str] = ("native: ERM's configured per-class loss; averaging acts on the weights, "
                                 "not on the objective")


class WeightAveraging(Algorithm):
    """ERM plus an averaged copy; subclasses say when to average (`averages_after`) and how
    (`average`, AveragedModel's `multi_avg_fn`)."""

    def __init__(self, params, parts) -> None:
        from torch.optim.swa_utils import AveragedModel

        super().__init__(params, parts)
        self.averaged = AveragedModel(self.model, multi_avg_fn=self.average, use_buffers=False)
        self.averaged.requires_grad_(False)
        self.steps = 0

    def averages_after(self, step: int) -> bool:
        """Whether the weights after update number `step` (1-based) join the average."""
        raise NotImplementedError

    def average(self, averaged, current, n_averaged) -> None:
        """Fold `current` (tensors of the live network) into `averaged`, which holds
        `n_averaged` >= 1 snapshots; AveragedModel copies the first snapshot itself."""
        raise NotImplementedError

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, batch):
        from heartbeatai.training.precision import autocast

        with autocast(self.device):
            logits = self.network(batch["x"], batch.get("demographics"), batch["domain"])
        loss = self.loss(logits.float(), batch["y"])
        self.step(loss)
        self.steps += 1
        if self.averages_after(self.steps):
            self.averaged.update_parameters(self.model)
        return {"loss": loss.detach()}

    def predict_network(self):
        return self.averaged.module if self.n_averaged > 0 else self.model

    def before_validation(self, train_batches) -> None:
        if self.n_averaged > 0:
            refresh_batch_norm(self.averaged.module, itertools.islice(train_batches, self.params.bn_batches),
                               self.device)

    def extra_state(self):
        return {"steps": self.steps, "n_averaged": self.n_averaged, "live": self.model.state_dict()}

    def restore(self, state) -> None:
        # The base loads `model` into the live network: here that entry is the averaged one. (Another
        # algorithm's checkpoint has no live entry; the base refuses it by its kind.)
        super().restore({**state, "model": (state.get("algorithm") or {}).get("live", state["model"])})
        if self.n_averaged > 0:
            self.averaged.module.load_state_dict(state["model"])

    def load_extra_state(self, state) -> None:
        self.steps = int(state["steps"])
        self.averaged.n_averaged.fill_(int(state["n_averaged"]))


def refresh_batch_norm(network, batches, device) -> None:
    """Recompute `network`'s batch-norm running statistics on `batches` (CPU batches of the
    training loader): each layer's mean and unbiased variance, averaged over the batches with
    equal weight (as update_bn), then over the DDP ranks; `network` is left in eval mode."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from heartbeatai.training.precision import autocast

    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    network.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
        norm.train()
    with torch.no_grad():
        for batch in batches:
            demographics = batch.get("demographics")
            with autocast(device):
                network(batch["x"].to(device), None if demographics is None else demographics.to(device), None)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        norm.eval()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world = dist.get_world_size()
        for norm in norms:
            for stat in (norm.running_mean, norm.running_var):
                dist.all_reduce(stat)
                stat.div_(world)
