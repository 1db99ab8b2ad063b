"""Ablation arms: named overrides of a fold's selected configuration (DESIGN.md, Study).

Each arm is declared once, here. An arm removes one component of the paper's model from
the configuration the search selected, so `full` vs arm isolates that component with
everything else tuned. `prevalence` trains nothing: it scores every record with the
training prevalence, the floor every number stands against (ecg_ptbxl_benchmarking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

PREVALENCE = "prevalence"


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    trained: bool = True


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
        Arm("full"),
        Arm("no-se", {"model.se": False}),
        Arm("no-concentration", {"model.concentration": False}),
        Arm("no-mixstyle", {"mixstyle.p": 0.0}),
        Arm("no-smoothing", {"label_smoothing": 0.0}),
        Arm("loss-bce", {"loss.kind": "bce"}),
        # A plain ResNet trained with BCE: what the paper's components are measured against.
        Arm("baseline", _PAPER_COMPONENTS_OFF),
        Arm(PREVALENCE, trained=False),
    )
}

DEFAULT_ARMS: tuple[str, ...] = tuple(BUILTIN_ARMS)


def resolve_arms(names: list[str], user_arms: Mapping[str, Mapping[str, Any]]) -> list[Arm]:
    """The study's arms in the order given; user arms are plain trained overrides."""
    return [BUILTIN_ARMS[n] if n in BUILTIN_ARMS else Arm(n, dict(user_arms[n])) for n in names]
