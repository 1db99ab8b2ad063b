"""The registry of training algorithms: one module per algorithm, one line here.

Everything else derives from ALGORITHMS: the trial configuration's `algorithm` section (a
union discriminated by `kind`), `heartbeatai algorithms`, the loop's choice of step and the
tests parametrised over the registry. Adding an algorithm: a module with an `Algorithm`
subclass and its `AlgorithmParams` (docs/extending.md), then one line below. Importing
this registry imports no torch; an algorithm's step does, when it runs.
"""

from __future__ import annotations

from heartbeatai.hparams import variant_registry
from heartbeatai.training.algorithms.base import Algorithm, AlgorithmParams, StepParts
from heartbeatai.training.algorithms.cdan import CDAN
from heartbeatai.training.algorithms.coral import CORAL
from heartbeatai.training.algorithms.dann import DANN
from heartbeatai.training.algorithms.ema import EMA
from heartbeatai.training.algorithms.erm import ERM
from heartbeatai.training.algorithms.fishr import Fishr
from heartbeatai.training.algorithms.groupdro import GroupDRO
from heartbeatai.training.algorithms.irm import IRM
from heartbeatai.training.algorithms.mixstyle import MixStyle
from heartbeatai.training.algorithms.mixup import Mixup
from heartbeatai.training.algorithms.mmd import MMD
from heartbeatai.training.algorithms.rsc import RSC
from heartbeatai.training.algorithms.swa import SWA
from heartbeatai.training.algorithms.vrex import VREx

_ALGORITHMS: tuple[type[Algorithm], ...] = (
    ERM,
    VREx,
    EMA,
    SWA,
    Mixup,
    CORAL,
    MMD,
    DANN,
    CDAN,
    GroupDRO,
    IRM,
    Fishr,
    RSC,
    MixStyle,
)

ALGORITHM_PARAMS = variant_registry([a.Params for a in _ALGORITHMS], "algorithm")
ALGORITHMS: dict[str, type[Algorithm]] = {a.Params.model_fields["kind"].default: a for a in _ALGORITHMS}
DEFAULT_ALGORITHM = "erm"


def build_algorithm(params: AlgorithmParams, parts: StepParts) -> Algorithm:
    return ALGORITHMS[params.kind](params, parts)


__all__ = ["ALGORITHMS", "ALGORITHM_PARAMS", "DEFAULT_ALGORITHM", "Algorithm", "AlgorithmParams", "StepParts",
           "build_algorithm"]
