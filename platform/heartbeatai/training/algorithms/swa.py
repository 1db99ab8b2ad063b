"""SWA: the uniform average of the weights from a fraction of training on predicts.

Izmailov et al., Averaging weights leads to wider optima and better generalization, UAI 2018;
densely, every step rather than once per learning-rate cycle, as SWAD (Cha et al., NeurIPS
2021) averages for domain generalization, but over a fixed window (the last
1 - start_fraction of the steps) rather than SWAD's loss-based one. The learning-rate
schedule stays the trial's. averaging.py holds the averaged copy and the batch-norm refresh.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from heartbeatai.hparams import hparam
from heartbeatai.training.algorithms.averaging import AveragingParams, WeightAveraging


class SWAParams(AveragingParams):
    kind: Literal["swa"] = "swa"
    # Izmailov et al. start at 75% of the training budget.
    start_fraction: float = hparam(0.75, ge=0.0, lt=1.0, search={"uniform": [0.5, 0.9]})
    paper: ClassVar[str] = ("Izmailov et al., Averaging weights leads to wider optima and better generalization, "
                            "UAI 2018")


class SWA(WeightAveraging):
    Params = SWAParams

    def averages_after(self, step: int) -> bool:
        return step > int(self.params.start_fraction * self.total_steps)

    def average(self, averaged, current, n_averaged) -> None:
        # The running mean over n + 1 snapshots, AveragedModel's own default, spelt out.
        weight = 1.0 / (self.n_averaged + 1)
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)
