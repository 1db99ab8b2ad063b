"""What a training algorithm is: it owns the step (DomainBed's `Algorithm.update`), the loop owns the rest.

The loop (training/loop.py) builds the network and the configured multi-label loss, hands
them to the algorithm, and per batch calls `update(batch)`; epochs, validation, checkpoints,
DDP and reporting stay in the loop. An algorithm owns:
- its objective: the configured per-class loss (BCE, focal or ASL, label smoothing
  included) plus whatever penalty it adds. Softmax cross-entropy on multi-hot targets
  appears nowhere: a multi-label ECG has several true classes at once;
- its extra modules (a domain discriminator, an averaged copy of the weights), built in
  `__init__` and optimised by the optimiser it makes through `parts.make_optimizer`;
- its state in the checkpoint (`checkpoint_state` / `restore`), so a resumed run
  repeats an uninterrupted one exactly on CPU;
- the network used for prediction (`predict_network`): what is tested and exported, and
  anything it needs before it predicts (`before_validation`: weight averaging refreshes its
  batch-norm statistics there; the loop calls it before every validation).

Batches carry domain ids of the training domains only (batch["domain"]); the held-out
domain is never in a training batch. Parameter models (`AlgorithmParams`) import no torch,
so the trial configuration that holds them stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from heartbeatai.hparams import StrictModel

if TYPE_CHECKING:
    import torch


class AlgorithmParams(StrictModel):
    """An algorithm's parameters; `kind` (a one-value Literal) selects it in `algorithm.kind`."""

    kind: str
    # How the algorithm's objective stays correct for sigmoid outputs and multi-hot targets
    # (`heartbeatai algorithms` lists it).
    multilabel: ClassVar[str]
    paper: ClassVar[str]


@dataclass
class StepParts:
    """What the loop hands an algorithm."""

    model: "torch.nn.Module"  # the network, unwrapped: predicted with and checkpointed
    network: "torch.nn.Module"  # the same network, wrapped in DDP when there are several workers
    loss: "torch.nn.Module"  # the configured multi-label loss: loss(logits, targets) -> mean
    make_optimizer: Callable[["torch.nn.Module"], "torch.optim.Optimizer"]
    make_scheduler: Callable[["torch.optim.Optimizer"], Any]
    n_domains: int  # training domains; batch["domain"] is in range(n_domains)
    device: "torch.device"
    total_steps: int  # update() calls in the whole run (every epoch): schedules read progress from it


class Algorithm:
    """ERM's bookkeeping, which every algorithm shares; subclasses define `update`."""

    Params: ClassVar[type[AlgorithmParams]]
    # Its objective's penalty is over the global batch under DDP (distributed.gather_rows): two
    # workers with half batches step as one process (tests/test_algorithms_ddp_global.py).
    penalty_over_global_batch: ClassVar[bool] = False

    def __init__(self, params: AlgorithmParams, parts: StepParts) -> None:
        self.params = params
        self.model, self.network, self.loss = parts.model, parts.network, parts.loss
        self.device, self.n_domains, self.total_steps = parts.device, parts.n_domains, parts.total_steps
        self.optimizer = parts.make_optimizer(self.trainable())
        self.scheduler = parts.make_scheduler(self.optimizer)

    def step_at(self, fraction: float) -> int:
        """The update() call a fraction of the run reaches. Schedules are declared as fractions of
        the run, not step counts: DomainBed's counts (500 of its 5,000 steps) would outlast a
        whole run of a few hundred steps, and the phase they gate would never start."""
        return int(round(fraction * self.total_steps))

    def record_risk(self, logits: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        """The configured loss summed over the classes, averaged over the records: for BCE a
        record's negative log-likelihood of its label vector, the unit of DomainBed's softmax
        cross-entropy. An algorithm whose penalty does not scale with the loss (a feature
        distance, a domain discriminator's cross-entropy) weighs its penalty against this, so
        that DomainBed's weights and search ranges mean what they meant there: against the class
        mean (`self.loss`, 1/C of it) they weigh C times as much, and at 26 classes MMD, CORAL,
        DANN and CDAN lost 0.05-0.41 macro AUROC to ERM at their defaults (docs/algorithms.md)."""
        return self.loss(logits, y) * logits.shape[-1]

    def trainable(self) -> "torch.nn.Module":
        """What the optimiser updates: the network, and any module the algorithm adds."""
        return self.model

    def train(self) -> None:
        """Training mode for everything the step runs (validation leaves the network in eval)."""
        self.network.train()
        self.trainable().train()

    def update(self, batch: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """One optimisation step on a batch already on the device; returns scalar tensors,
        `loss` (the objective) first. The loop averages each over the epoch as train_<name>."""
        raise NotImplementedError

    def step(self, objective: "torch.Tensor") -> None:
        """Backward, optimiser and the per-batch learning-rate schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        self.scheduler.step()

    def predict_network(self) -> "torch.nn.Module":
        return self.model

    def before_validation(self, train_batches: Iterable[dict[str, "torch.Tensor"]]) -> None:
        """Called by the loop before each validation (and so before each checkpoint), on every
        rank, with the training loader (CPU batches): make `predict_network()` ready to predict."""

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint's entries this algorithm owns: `model` (what predicts) and
        whatever resuming needs. Plain containers and tensors only (weights_only)."""
        return {
            "model": self.predict_network().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "algorithm": {"kind": self.params.kind, **self.extra_state()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        extra = dict(state.get("algorithm") or {})
        if extra.pop("kind", self.params.kind) != self.params.kind:
            raise ValueError(f"checkpoint was trained with algorithm {state['algorithm']['kind']!r}, "
                             f"not {self.params.kind!r}")
        self.load_extra_state(extra)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class AnnealedPenalty(Algorithm):
    """An objective risk + weight * penalty whose weight is `warmup_weight` until a share of the run
    (params.anneal_fraction), then params.penalty_weight, with fresh optimiser moments at the
    switch (DomainBed's IRM, V-REx and Fishr: Adam does not like the jump in gradient scale; the
    schedule goes on). The step count is state, so a resumed run switches where it would have."""

    warmup_weight: ClassVar[float] = 1.0

    def __init__(self, params: AlgorithmParams, parts: StepParts) -> None:
        super().__init__(params, parts)
        self.steps = 0
        self.anneal_step = self.step_at(params.anneal_fraction)

    @property
    def annealed(self) -> bool:
        return self.steps >= self.anneal_step

    def step_penalised(self, risk: "torch.Tensor", penalty: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        """The step on risk + the current weight * penalty; returns the scalars `update` reports."""
        if self.steps == self.anneal_step and self.steps > 0:
            self.optimizer.state.clear()
        objective = risk + (self.params.penalty_weight if self.annealed else self.warmup_weight) * penalty
        self.step(objective)
        self.steps += 1
        return {"loss": objective.detach(), "risk": risk.detach(), "penalty": penalty.detach()}

    def extra_state(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


def domain_risks(per_record: "torch.Tensor", domains: "torch.Tensor", n_domains: int) -> "torch.Tensor":
    """The mean of `per_record` over each training domain present in the batch, (D_present,)."""
    import torch

    sums = torch.zeros(n_domains, dtype=per_record.dtype, device=per_record.device).index_add(0, domains, per_record)
    counts = torch.bincount(domains, minlength=n_domains)
    present = counts > 0
    return sums[present] / counts[present].to(per_record.dtype)


def feature_width(model: "torch.nn.Module") -> int:
    """The width of `model.features(...)`: the classifier's input less the demographics that
    `classify` joins (they describe the patient, so no algorithm aligns them)."""
    return model.classifier.in_features - model.demographics


def synchronised(module: "torch.nn.Module", device: "torch.device") -> "torch.nn.Module":
    """An algorithm's extra trained module (a domain discriminator) wrapped in DDP when the loop
    runs distributed, so its gradients are averaged over the workers as the network's are
    (and its initial state is rank 0's); the module itself otherwise."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
