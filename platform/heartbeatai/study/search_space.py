"""Search spaces over the trial configuration, addressed by dotted path (DESIGN.md, Trial configuration).

In YAML each entry names one distribution (the names of Ray Tune's own)::

    mixstyle.p: {uniform: [0.0, 1.0]}
    optim.lr: {loguniform: [1.0e-4, 3.0e-3]}
    loss.kind: {choice: [bce, focal, asl]}

and becomes an Optuna distribution, so the persisted Optuna study (and optuna-dashboard)
shows the same space the YAML declares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, model_validator

from heartbeatai.config import VARIANTS
from heartbeatai.hparams import declared_search
from heartbeatai.losses import LOSSES

if TYPE_CHECKING:  # Optuna is the driver's: a trial worker imports this module and never samples
    import optuna.distributions as od


class Distribution(BaseModel):
    """Exactly one of the fields is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    lograndint: tuple[int, int] | None = None
    # Scalars only: Optuna's RDB storage keeps categorical choices as JSON scalars.
    choice: list[str | bool | int | float | None] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Distribution":
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, randint, lograndint, choice")
        kind = given[0]
        if kind == "choice":
            if not self.choice:
                raise ValueError("choice needs at least one value")
            return self
        low, high = getattr(self, kind)
        if not low < high:
            raise ValueError(f"{kind}: low must be below high, got [{low}, {high}]")
        if kind.startswith("log") and low <= 0:
            raise ValueError(f"{kind}: bounds must be positive, got [{low}, {high}]")
        return self

    def to_optuna(self) -> od.BaseDistribution:
        import optuna.distributions as od

        if self.uniform:
            return od.FloatDistribution(*self.uniform)
        if self.loguniform:
            return od.FloatDistribution(*self.loguniform, log=True)
        if self.randint:
            return od.IntDistribution(*self.randint)
        if self.lograndint:
            return od.IntDistribution(*self.lograndint, log=True)
        return od.CategoricalDistribution(self.choice)


DEFAULT_SPACE: dict[str, Distribution] = {
    "mixstyle.p": Distribution(uniform=(0.0, 1.0)),
    "label_smoothing": Distribution(uniform=(0.0, 0.2)),
    "loss.kind": Distribution(choice=list(LOSSES)),  # every registered loss, in registry order
}


def declared_space(section: str, kind: str) -> dict[str, Distribution]:
    """The search distributions a registered loss or algorithm declares for its parameters
    (heartbeatai.hparams), keyed `<section>.<parameter>`: what `heartbeatai algorithms`
    lists and what an algorithm arm's own search draws from."""
    return {key: Distribution(**dist) for key, dist in declared_search(VARIANTS[section][kind], section).items()}


def optuna_space(space: dict[str, Distribution]) -> dict[str, od.BaseDistribution]:
    return {key: dist.to_optuna() for key, dist in space.items()}

