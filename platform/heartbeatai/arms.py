"""Ablation arms: named overrides of a fold's selected configuration (DESIGN.md, Study).

Each arm is declared once, here, and every layer (study config, fold runner, results store,
dashboard, the test fake) takes its names from this registry. An arm removes one component
of the paper's model from the configuration the search selected, so `full` vs arm isolates
that component with everything else tuned. `prevalence` trains nothing: it scores every
record with the training prevalence, the floor every number stands against
(ecg_ptbxl_benchmarking). `baseline` and `prevalence` are reference rows, not ablations:
they stand outside the family of ablation tests.

An algorithm arm (`algorithm-vrex`, one per entry of a study's `algorithms`) trains another
training algorithm than `full`'s ERM, as `loss-bce` trains another loss: the arm's name is
the override `algorithm.kind: vrex` spelt as a name, so a store says which arms are
algorithms without the algorithm registry (which a reader of an older or newer store may
not share). Unlike a component arm it does not reuse `full`'s selection: it gets its own
per-fold search over its own parameters with `full`'s budget (study/fold_runner.py), and is
compared with `full`, the ERM configuration, in its own decision family (analysis/decisions.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

FULL = "full"
PREVALENCE = "prevalence"
BASELINE = "baseline"
# Not an arm of the comparison: the key under which a fold's search trials and its
# validation-selected search winner are stored.
SEARCH = "search"
# Values of a store's `arm` column that are no arm: lists, legends and heatmap rows of arms
# leave them out (is_pseudo_arm), whatever the table they come from holds.
PSEUDO_ARMS = frozenset({SEARCH})


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    trained: bool = True
    # An ablation removes one component; a reference row (baseline, floor) is shown beside them.
    ablation: bool = True
    # The training algorithm an algorithm arm trains (with its own search); None for the rest.
    algorithm: str | None = None


_PAPER_COMPONENTS_OFF = {
    "model.se": False,
    "model.concentration": False,
    "mixstyle.p": 0.0,
    "label_smoothing": 0.0,
    "loss.kind": "bce",
}

BUILTIN_ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm(FULL, ablation=False),
        Arm("no-se", {"model.se": False}),
        Arm("no-concentration", {"model.concentration": False}),
        Arm("no-mixstyle", {"mixstyle.p": 0.0}),
        Arm("no-smoothing", {"label_smoothing": 0.0}),
        Arm("loss-bce", {"loss.kind": "bce"}),
        # A plain ResNet trained with BCE: what the paper's components are measured against.
        Arm(BASELINE, _PAPER_COMPONENTS_OFF, ablation=False),
        Arm(PREVALENCE, trained=False, ablation=False),
    )
}

DEFAULT_ARMS: tuple[str, ...] = tuple(BUILTIN_ARMS)

# Other spellings of the built-in arms, read as the canonical names so that stores and
# configs written with them load and resume.
ALIASES: dict[str, str] = {
    "no-SE": "no-se",
    "no-MixStyle": "no-mixstyle",
    "no-Concentration": "no-concentration",
    "loss=bce": "loss-bce",
}


# An algorithm arm's name: the prefix, then the algorithm's registered kind.
ALGORITHM_ARM_PREFIX = "algorithm-"


def algorithm_arm(kind: str) -> Arm:
    """The arm that trains algorithm `kind` (a registered kind: the study config checks it)."""
    return Arm(f"{ALGORITHM_ARM_PREFIX}{kind}", {"algorithm.kind": kind}, ablation=False, algorithm=kind)


def algorithm_of(name: str) -> str | None:
    """The algorithm an arm's name says it trains, or None for every other arm."""
    return name[len(ALGORITHM_ARM_PREFIX):] if name.startswith(ALGORITHM_ARM_PREFIX) else None


def canonical_arm(name: str) -> str:
    return ALIASES.get(name, name)


def resolve_arms(names: list[str], user_arms: Mapping[str, Mapping[str, Any]],
                 algorithms: list[str] = ()) -> list[Arm]:
    """The study's arms in the order given, then one arm per algorithm; user arms are plain
    trained ablations."""
    resolved = []
    for name in map(canonical_arm, names):
        resolved.append(BUILTIN_ARMS[name] if name in BUILTIN_ARMS else Arm(name, dict(user_arms[name])))
    return resolved + [algorithm_arm(kind) for kind in algorithms]


def is_pseudo_arm(name: str) -> bool:
    """A key of the store's arm column that is not an arm of the comparison (a fold's search)."""
    return name in PSEUDO_ARMS


def is_reference(name: str) -> bool:
    """A reference row (the plain-ResNet baseline, the prevalence floor): outside the ablation family."""
    arm = BUILTIN_ARMS.get(canonical_arm(name))
    return arm is not None and not arm.ablation and arm.name != FULL


def is_algorithm(name: str) -> bool:
    """An algorithm arm: compared with `full` (ERM) in the algorithms' own decision family."""
    return algorithm_of(name) is not None
