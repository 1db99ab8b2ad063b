"""Every trial-config field reaches the module it configures; defaults fit any model shape.

The wiring test is parametrised over the config classes' own fields (pydantic
`model_fields`) and over every registered loss's and algorithm's parameters, so a field
added to ModelConfig, MixStyleConfig, PreprocessConfig, a loss or an algorithm fails here
until training/factory.py maps it and WIRING says how to see it in the built object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from heartbeatai.arms import BUILTIN_ARMS, FULL
from heartbeatai.config import VARIANTS, MixStyleConfig, ModelConfig, PreprocessConfig, TrialConfig
from heartbeatai.losses import LOSSES
from heartbeatai.model.blocks import SqueezeExcitation1d
from heartbeatai.training.factory import (
    N_DEMOGRAPHICS,
    algorithm_from_config,
    loss_from_config,
    model_from_config,
    signal_transform,
    train_sampler,
    window_lengths,
)

FS = 100.0
N_CLASSES = 2
# Class 0: 2 positives of 4, class 1: 1 of 4, so pos_weight = negatives / positives = (1, 3).
TRAIN_LABELS = np.array([[1, 0], [0, 0], [1, 1], [0, 0]], dtype=np.float32)
# Small widths so building is cheap; everything else is TrialConfig's default.
BASE = TrialConfig().with_overrides({"model.stem_width": 8, "model.widths": [8, 16, 32]})
# Training records of two domains, for the sampler.
TRAIN_DOMAINS = np.repeat([0, 1], [30, 20])
TRAIN_LENGTHS = np.full(len(TRAIN_DOMAINS), 600)


@dataclass
class Built:
    model: nn.Module
    loss: nn.Module
    transform: Any
    windows: tuple[int, int]
    sampler: Any
    algorithm: Any


def build(trial: TrialConfig) -> Built:
    model = model_from_config(trial, N_CLASSES)
    loss = loss_from_config(trial, TRAIN_LABELS)
    return Built(
        model=model,
        loss=loss,
        transform=signal_transform(trial, FS),
        windows=window_lengths(trial, FS),
        sampler=train_sampler(trial, TRAIN_DOMAINS, TRAIN_LENGTHS, 500, 8),
        algorithm=algorithm_from_config(trial, model, model, loss, steps_per_epoch=4, n_domains=2,
                                        device=torch.device("cpu")),
    )


@dataclass(frozen=True)
class Wire:
    """Set `value` (on top of `context`), then `observe(built)` must give `expected`."""

    value: Any
    observe: Callable[[Built], Any]
    expected: Any
    context: dict[str, Any] | None = None


def _dropout_rates(model: nn.Module) -> set[float]:
    return {m.p for m in model.modules() if isinstance(m, nn.Dropout)}


WIRING: dict[str, Wire] = {
    # model: the network's structure
    "model.stem_width": Wire(12, lambda b: b.model.stem[0].out_channels, 12),
    "model.widths": Wire([8, 24, 40], lambda b: [s[0].conv1.out_channels for s in b.model.stages], [8, 24, 40]),
    "model.depths": Wire([1, 3, 1], lambda b: [len(s) for s in b.model.stages], [1, 3, 1]),
    "model.stem_kernel": Wire(9, lambda b: b.model.stem[0].kernel_size, (9,)),
    "model.kernel": Wire(3, lambda b: {blk.conv1.kernel_size for s in b.model.stages for blk in s}, {(3,)}),
    "model.se": Wire(False, lambda b: any(isinstance(m, SqueezeExcitation1d) for m in b.model.modules()), False),
    # The first stage is 8 wide: reduction 2 squeezes it to 4 channels (16, the default, to 1).
    "model.se_reduction": Wire(2, lambda b: b.model.stages[0][0].se.excite[0].out_channels, 4),
    "model.dropout": Wire(0.35, lambda b: _dropout_rates(b.model), {0.35}),
    "model.concentration": Wire(False, lambda b: b.model.concentration is None, True),
    "model.concentration_stages": Wire([2], lambda b: b.model.concentration.stages, (2,)),
    "model.demographics": Wire(True, lambda b: b.model.demographics, N_DEMOGRAPHICS),
    # mixstyle: the MixStyle module and where it acts
    "mixstyle.p": Wire(0.3, lambda b: b.model.mixstyle.p, 0.3),
    "mixstyle.alpha": Wire(0.7, lambda b: b.model.mixstyle.alpha, 0.7),
    "mixstyle.layers": Wire([2], lambda b: b.model.mixstyle_stages, frozenset({2})),
    "mixstyle.mix": Wire(
        "crossdomain", lambda b: (b.model.mixstyle.mix, type(b.sampler).__name__), ("crossdomain", "TwoDomainBatchSampler")
    ),
    # loss: the loss module (asl by default)
    "loss.kind": Wire("focal", lambda b: type(b.loss.params).__name__, "Focal"),
    "loss.gamma": Wire(3.0, lambda b: b.loss.params.gamma, 3.0, context={"loss.kind": "focal"}),
    "loss.alpha": Wire(0.4, lambda b: b.loss.params.alpha, 0.4, context={"loss.kind": "focal"}),
    "loss.gamma_neg": Wire(2.0, lambda b: b.loss.params.gamma_neg, 2.0, context={"loss.kind": "asl"}),
    "loss.gamma_pos": Wire(1.0, lambda b: b.loss.params.gamma_pos, 1.0, context={"loss.kind": "asl"}),
    "loss.clip": Wire(0.1, lambda b: b.loss.params.clip, 0.1, context={"loss.kind": "asl"}),
    "loss.pos_weight": Wire(
        True, lambda b: None if b.loss.pos_weight is None else b.loss.pos_weight.tolist(), [1.0, 3.0]
    ),
    # algorithm: the step the loop calls
    "algorithm.kind": Wire("vrex", lambda b: type(b.algorithm).__name__, "VREx"),
    "algorithm.penalty_weight": Wire(3.0, lambda b: b.algorithm.params.penalty_weight, 3.0,
                                     context={"algorithm.kind": "vrex"}),
    "algorithm.anneal_fraction": Wire(0.3, lambda b: b.algorithm.params.anneal_fraction, 0.3,
                                      context={"algorithm.kind": "vrex"}),
    "algorithm.eta": Wire(0.05, lambda b: b.algorithm.params.eta, 0.05, context={"algorithm.kind": "groupdro"}),
    "algorithm.alpha": Wire(0.5, lambda b: b.algorithm.params.alpha, 0.5,
                            context={"algorithm.kind": "mixup", "loss.kind": "bce"}),
    "algorithm.ema_decay": Wire(0.9, lambda b: b.algorithm.params.ema_decay, 0.9, context={"algorithm.kind": "fishr"}),
    "algorithm.bn_batches": Wire(7, lambda b: b.algorithm.params.bn_batches, 7, context={"algorithm.kind": "swa"}),
    "algorithm.decay": Wire(0.99, lambda b: b.algorithm.params.decay, 0.99, context={"algorithm.kind": "ema"}),
    "algorithm.start_fraction": Wire(0.5, lambda b: b.algorithm.params.start_fraction, 0.5,
                                     context={"algorithm.kind": "swa"}),
    "algorithm.adversary_weight": Wire(0.5, lambda b: b.algorithm.params.adversary_weight, 0.5,
                                       context={"algorithm.kind": "dann"}),
    "algorithm.mlp_width": Wire(64, lambda b: b.algorithm.discriminator[0].out_features, 64,
                                context={"algorithm.kind": "cdan"}),
    "algorithm.mlp_depth": Wire(5, lambda b: sum(isinstance(m, nn.Linear) for m in b.algorithm.discriminator), 5,
                                context={"algorithm.kind": "dann"}),
    "algorithm.mlp_dropout": Wire(0.5, lambda b: b.algorithm.discriminator[1].p, 0.5,
                                  context={"algorithm.kind": "dann"}),
    "algorithm.feature_drop": Wire(0.25, lambda b: b.algorithm.params.feature_drop, 0.25,
                                   context={"algorithm.kind": "rsc"}),
    "algorithm.batch_drop": Wire(0.25, lambda b: b.algorithm.params.batch_drop, 0.25,
                                 context={"algorithm.kind": "rsc"}),
    "algorithm.weight_decay_d": Wire(1e-3, lambda b: b.algorithm.optimizer.param_groups[-1]["weight_decay"], 1e-3,
                                     context={"algorithm.kind": "dann"}),
    # preprocess: the signal transform and the loop's window lengths (samples at FS)
    "preprocess.bandpass_low_hz": Wire(1.0, lambda b: b.transform.low_hz, 1.0),
    "preprocess.bandpass_high_hz": Wire(30.0, lambda b: b.transform.high_hz, 30.0),
    "preprocess.normalize": Wire("none", lambda b: b.transform.normalize, "none"),
    "preprocess.crop_seconds": Wire(8.0, lambda b: b.windows[0], 800),
    "preprocess.eval_stride_seconds": Wire(2.0, lambda b: b.windows[1], 200),
}

SECTIONS = {"model": ModelConfig, "mixstyle": MixStyleConfig, "preprocess": PreprocessConfig}
FIELDS = [f"{section}.{name}" for section, config in SECTIONS.items() for name in config.model_fields]
# Variant sections: every registered kind's parameters; `kind` itself where there is a choice.
FIELDS += sorted({f"{section}.{name}" for section, registry in VARIANTS.items() for model in registry.values()
                  for name in model.model_fields if name != "kind" or len(registry) > 1})


@pytest.mark.parametrize("field", FIELDS)
def test_every_config_field_reaches_the_module_it_configures(field):
    assert field in WIRING, f"{field}: map it in training/factory.py and add how to see it to WIRING"
    wire = WIRING[field]
    base = BASE.with_overrides(wire.context or {})
    changed = base.with_overrides({field: wire.value})
    assert wire.observe(build(base)) != wire.expected, f"{field}: the base already shows the value; pick another"
    assert wire.observe(build(changed)) == wire.expected


def test_wiring_names_only_fields_that_exist():
    assert sorted(WIRING) == sorted(FIELDS)


@pytest.mark.parametrize("arm", [a for a in BUILTIN_ARMS.values() if a.trained], ids=lambda a: a.name)
def test_every_arm_of_a_crossdomain_study_draws_the_batches_full_draws(arm):
    """The sampler follows mixstyle.mix alone, so no-mixstyle (p = 0) changes MixStyle and nothing else."""
    full = BASE.with_overrides({"mixstyle.mix": "crossdomain", "mixstyle.p": 0.7, **BUILTIN_ARMS[FULL].overrides})
    ablated = full.with_overrides(dict(arm.overrides))
    assert ablated.mixstyle.mix == "crossdomain"
    assert list(build(ablated).sampler) == list(build(full).sampler)


def test_the_no_mixstyle_arm_only_turns_mixstyle_p_off():
    assert dict(BUILTIN_ARMS["no-mixstyle"].overrides) == {"mixstyle.p": 0.0}


def test_label_smoothing_reaches_the_loss():
    assert loss_from_config(BASE.with_overrides({"label_smoothing": 0.2}), TRAIN_LABELS).label_smoothing == 0.2


@pytest.mark.parametrize(
    ("widths", "inner"),
    [([16, 32, 64], (1, 2)), ([16], ())],
    ids=["three-stages", "one-stage"],
)
def test_a_config_that_only_sets_widths_validates_and_builds(widths, inner):
    trial = TrialConfig.model_validate({"model": {"widths": widths}})
    model = model_from_config(trial, N_CLASSES).eval()
    assert [len(stage) for stage in model.stages] == [2] * len(widths)
    assert (model.concentration.stages if model.concentration is not None else ()) == inner
    assert model.mixstyle_stages == frozenset(inner)
    assert (model.mixstyle is None) == (not inner)  # one stage: nothing before the last to mix
    assert model(torch.randn(2, 12, 500)).shape == (2, N_CLASSES)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_every_registered_loss_builds_and_computes_its_own_formula(kind):
    loss = loss_from_config(BASE.with_overrides({"loss.kind": kind}), TRAIN_LABELS)
    assert loss.params.kind == kind
    assert torch.isfinite(loss(torch.zeros(4, N_CLASSES), torch.from_numpy(TRAIN_LABELS)))
