"""EMA: an exponential moving average of the weights predicts (averaging.py does the rest).

Polyak and Juditsky's averaging (SIAM J. Control Optim. 1992) in its exponential form, the
"mean teacher" weights of Tarvainen and Valpola (NeurIPS 2017) and timm's ModelEmaV2.
DomainBed has no EMA entry; for domain generalization Arpit et al. (Ensemble of averages,
NeurIPS 2022) average the weights too, uniformly from an early step, which is SWA here with
a small start_fraction.

The average is bias-corrected as Adam's moments are (Kingma and Ba, ICLR 2015): the moving
average started from zero and divided by 1 - decay^n after n snapshots, which is the
weighted mean of the snapshots so far with weights decay^(n - k). Early on it is close to
their plain mean, so early validations are not dominated by the first weights, and the decay
acts from the first step. TensorFlow's ramp, min(decay, (1 + n) / (10 + n)), which this
replaced, held the decay below 0.99 for the first 900 steps: in runs of a few hundred steps
every searched decay of 0.99 or more gave the same network.
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

    def weight_of_snapshot(self, n_averaged: int) -> float:
        """The bias-corrected average's step towards snapshot n + 1 given the mean of n:
        (1 - d) / (1 - d^(n + 1)), 1 / (n + 1) as d -> 0's complement, 1 - d as n grows."""
        decay = self.params.decay
        return (1.0 - decay) / (1.0 - decay ** (n_averaged + 1))

    def average(self, averaged, current, n_averaged) -> None:
        weight = self.weight_of_snapshot(self.n_averaged)  # python's count: no device sync per tensor
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)
