"""EMA: an exponential moving average of the weights predicts (averaging.py does the rest).

Polyak and Juditsky's averaging (SIAM J. Control Optim. 1992) in its exponential form, the
"mean teacher" weights of Tarvainen and Valpola (NeurIPS 2017) and timm's ModelEmaV2.
DomainBed has no EMA entry; for domain generalization Arpit et al. (Ensemble of averages,
NeurIPS 2022) average the weights too, uniformly from an early step, which is SWA here with
a small start_fraction. The decay ramps up as TensorFlow's
`ExponentialMovingAverage(num_updates=...)` does, min(decay, (1 + n) / (10 + n)) after n
averaged snapshots, so that early validations are not dominated by the initial weights.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.averaging import AveragingParams, WeightAveraging


class EMAParams(AveragingParams):
    kind: Literal["ema"] = "ema"
    # 0.999: an effective window of about a thousand steps (timm's and Mean teacher's late-training
    # value); searched over windows of 100 to 10 000 steps.
    decay: float = hparam(0.999, ge=0.0, lt=1.0, search={"uniform": [0.99, 0.9999]})
    paper: ClassVar[str] = ("Polyak and Juditsky, Acceleration of stochastic approximation by averaging, 1992; "
                            "exponential form: Tarvainen and Valpola, Mean teachers, NeurIPS 2017")


class EMA(WeightAveraging):
    Params = EMAParams

    def averages_after(self, step: int) -> bool:
        return True

    def decay_after(self, n_averaged: int) -> float:
        return min(self.params.decay, (1.0 + n_averaged) / (10.0 + n_averaged))

    def average(self, averaged, current, n_averaged) -> None:
        weight = 1.0 - self.decay_after(self.n_averaged)  # python's count: no device sync per tensor
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)
