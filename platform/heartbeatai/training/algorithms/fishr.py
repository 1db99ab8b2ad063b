"""Fishr: the configured loss plus the distance between the training domains' variances of
per-record gradients of the classifier.

Rame et al., Fishr: invariant gradient variances for out-of-distribution generalization,
ICML 2022; DomainBed's `Fishr` is the reference implementation. Per-record gradients of the
configured per-class loss (BCE, focal or ASL, label smoothing included; a record's loss is
its sum over classes, its Bernoulli negative log-likelihood under BCE, the analogue of
DomainBed's per-record cross-entropy: the mean over C classes would scale every gradient
entry by 1/C, the penalty by 1/C^4 against a risk that is itself a mean, and leave
DomainBed's penalty weights inert) with respect to the last linear layer's weight and bias, computed
with torch.func (vmap of grad over a functional_call of that layer, not BackPACK), so they
stay differentiable in the features and the penalty trains the whole network. SEResNet1d's
head is one Linear (`model.classifier`, fed the pooled features and demographics); a deeper
head would be represented by its last Linear. Per domain, the variance over its records
of each gradient entry (DomainBed's biased variance), then an exponential moving average
per domain (decay ema_decay, divided by 1 - ema_decay as DomainBed does so the gradient
scale does not depend on it); the penalty is the mean over domains of the mean squared
difference of each domain's averaged variance from their mean. Penalty weight 0 for the
first anneal_fraction of the run's steps, then the full weight and fresh optimiser moments
(DomainBed).

Batches here mix domains: a domain enters a step when it has at least two records in the
batch (one record has no variance); the others keep their moving average. The moving
averages are state, in the checkpoint; under DDP both the stored averages and the penalty
are taken over the global batch (every worker's head inputs, distributed.gather_rows), so
they are the same on every rank and do not depend on the worker count.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.base import AlgorithmParams, AnnealedPenalty


class FishrParams(AlgorithmParams):
    kind: Literal["fishr"] = "fishr"
    # DomainBed's lambda: default 1000, searched as 10**U(1, 4).
    penalty_weight: float = hparam(1000.0, ge=0.0, search={"loguniform": [10.0, 1.0e4]})
    # DomainBed's penalty_anneal_iters: 1500 of 5,000 steps, searched as int(U(0, 5000)); here the
    # share of the run (Algorithm.step_at), capped below 1 so a draw always trains with the penalty.
    anneal_fraction: float = hparam(0.3, ge=0.0, le=1.0, search={"uniform": [0.0, 0.8]})
    # DomainBed's ema: 0.95, searched as U(0.90, 0.99).
    ema_decay: float = hparam(0.95, ge=0.0, lt=1.0, search={"uniform": [0.90, 0.99]})
    multilabel: ClassVar[str] = ("per-record gradients are those of the configured per-class loss (the record's sum "
                                 "over classes, as a cross-entropy sums) in the last linear layer; no softmax anywhere")
    paper: ClassVar[str] = ("Rame et al., Fishr: invariant gradient variances for out-of-distribution "
                            "generalization, ICML 2022")


def classifier_head(model):
    """The layer whose per-record gradients Fishr compares: `model.classifier` when it is a
    Linear, else its last Linear."""
    from torch import nn

    head = model.classifier
    if isinstance(head, nn.Linear):
        return head
    return [m for m in head.modules() if isinstance(m, nn.Linear)][-1]


class Fishr(AnnealedPenalty):
    Params = FishrParams
    penalty_over_global_batch = True
    warmup_weight = 0.0  # DomainBed: no penalty before the anneal step, only its moving averages

    def __init__(self, params, parts) -> None:
        import torch

        super().__init__(params, parts)
        self.head = classifier_head(self.model)
        n_params = sum(p.numel() for p in self.head.parameters())
        self.ema = torch.zeros(self.n_domains, n_params, device=self.device)
        self._head_input = None
        # The head's input (features joined by demographics, as the model's `classify` does)
        # is read where the network's own forward hands it to the layer: through DDP's forward.
        self._hook = self.head.register_forward_pre_hook(self._keep_head_input)

    def _keep_head_input(self, module, args):
        if self._head_input is not None:
            self._head_input.append(args[0])

    def update(self, batch):
        from heartbeatai.training.precision import autocast

        self._head_input = []
        try:
            with autocast(self.device):
                logits = self.network(batch["x"], batch.get("demographics"), batch["domain"])
            (head_input,) = self._head_input
        finally:
            self._head_input = None
        from heartbeatai.training.algorithms.distributed import gather_rows

        risk = self.loss(logits.float(), batch["y"])
        # Before the anneal step the penalty only feeds the moving averages (weight 0, as
        # DomainBed): no graph through the per-record gradients, whose backward is the costly part.
        # Under DDP, every worker's records (the global batch), so the variances do not depend on
        # the worker count and the moving averages stay the same on every rank.
        head_input = head_input.float() if self.annealed else head_input.float().detach()
        grads = self.per_record_grads(gather_rows(head_input), gather_rows(batch["y"]), differentiable=self.annealed)
        return self.step_penalised(risk, self.penalty(grads, gather_rows(batch["domain"])))

    def per_record_grads(self, head_input, y, differentiable=True):
        """(B, P): each record's gradient of its configured loss in the head's parameters,
        flattened in `named_parameters` order; differentiable in `head_input` and the head
        unless `differentiable` is False."""
        import torch
        from torch.func import functional_call, grad, vmap

        def record_loss(params, z, target):
            return self.loss.elementwise(functional_call(self.head, params, (z[None],)), target[None]).sum()

        params = {name: p if differentiable else p.detach() for name, p in self.head.named_parameters()}
        if not differentiable:
            head_input = head_input.detach()
        grads = vmap(grad(record_loss), in_dims=(None, 0, 0))(params, head_input, y)
        return torch.cat([g.flatten(1) for g in grads.values()], dim=1)

    def penalty(self, grads, domains):
        import torch

        decay = self.params.ema_decay
        onehot = torch.nn.functional.one_hot(domains, self.n_domains)  # (B, D)
        # The stored averages: the global batch's records (E[g^2] - E[g]^2, in float64 against
        # cancellation), the same on every rank.
        g, onehot = grads.detach().double(), onehot.double()
        sums = torch.cat([onehot.sum(0)[:, None], onehot.t() @ g, onehot.t() @ g.pow(2)], dim=1)
        n, p = sums[:, :1], grads.shape[1]
        seen = n.flatten() >= 2
        mean = sums[:, 1:1 + p] / n.clamp(min=1.0)
        variance = (sums[:, 1 + p:] / n.clamp(min=1.0) - mean.pow(2)).clamp(min=0.0).to(grads.dtype)
        previous = self.ema
        self.ema = torch.where(seen[:, None], decay * previous + (1 - decay) * variance, previous)
        # The penalty: the same records, differentiable.
        averaged = []
        for d in range(self.n_domains):
            own = grads[domains == d]
            if len(own) < 2:
                continue
            own_variance = (own - own.mean(0, keepdim=True)).pow(2).mean(0)
            averaged.append((decay * previous[d] + (1 - decay) * own_variance) / (1 - decay))
        if len(averaged) < 2:
            return grads.new_zeros(())
        averaged = torch.stack(averaged)
        return (averaged - averaged.mean(0, keepdim=True)).pow(2).mean(1).mean()

    def extra_state(self):
        return {**super().extra_state(), "ema": self.ema.detach().cpu().clone()}

    def load_extra_state(self, state):
        super().load_extra_state(state)
        self.ema = state["ema"].to(self.device, self.ema.dtype)
