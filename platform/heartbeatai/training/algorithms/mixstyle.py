"""MixStyle as an algorithm arm, with its parameters declared once: in the `mixstyle` section.

MixStyle (Zhou et al., ICLR 2021) is a layer of the network (model/mixstyle.py), configured
by the trial's `mixstyle` section (p, alpha, layers, mix), and the `no-mixstyle` arm turns it
off with `mixstyle.p: 0`. A DG zoo lists algorithms, so MixStyle is one here too, without a
second set of parameters: `algorithm.kind: mixstyle` declares none, its step is ERM's, and it
requires the network's MixStyle to be on. The trial configuration refuses it with
`mixstyle.p: 0` (config.py, one line), and construction refuses a network with no MixStyle
layer (a one-stage network has no stage before the last to mix). `erm` leaves the network as
configured, so existing configurations, arms and stores mean what they meant: `full` is ERM
with MixStyle on, as before. A zoo that compares the two sets MixStyle off in its ERM arm
(`{algorithm.kind: erm, mixstyle.p: 0}`) and lists `{algorithm.kind: mixstyle}` over a base
with it on; `mixstyle.p`, `alpha`, `layers` and `mix` stay searchable under their one name.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.training.algorithms.base import AlgorithmParams
from heartbeatai.training.algorithms.erm import ERM


class MixStyleParams(AlgorithmParams):
    kind: Literal["mixstyle"] = "mixstyle"
    multilabel: ClassVar[str] = ("native: ERM's configured per-class loss; MixStyle mixes feature statistics, "
                                 "never the labels")
    paper: ClassVar[str] = "Zhou et al., Domain generalization with MixStyle, ICLR 2021"


class MixStyle(ERM):
    Params = MixStyleParams

    def __init__(self, params, parts) -> None:
        from heartbeatai.model.mixstyle import MixStyle1d

        if not any(isinstance(m, MixStyle1d) and m.p > 0 for m in parts.model.modules()):
            raise ValueError("algorithm.kind: mixstyle needs the network's MixStyle on (mixstyle.p > 0 and a "
                             "stage before the last in mixstyle.layers)")
        super().__init__(params, parts)
