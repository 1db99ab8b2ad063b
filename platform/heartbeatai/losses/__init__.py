"""The registry of multi-label losses: one module per loss, one line here.

Everything else derives from LOSSES: the trial configuration's `loss` section (a union
discriminated by `kind`), the search space's default `loss.kind` choices (in this order),
the factory and the tests parametrised over the registry. Adding a loss: a module with a
`LossParams` subclass (docs/extending.md), then one line below. Nothing here imports torch;
heartbeatai.losses.module builds the torch loss from a configured `LossParams`.
"""

from __future__ import annotations

from heartbeatai.hparams import variant_registry
from heartbeatai.losses.asl import ASL
from heartbeatai.losses.base import LossParams
from heartbeatai.losses.bce import BCE
from heartbeatai.losses.focal import Focal

LOSSES = variant_registry([
    BCE,
    Focal,
    ASL,
], "loss")
DEFAULT_LOSS = "asl"

__all__ = ["LOSSES", "DEFAULT_LOSS", "LossParams"]
