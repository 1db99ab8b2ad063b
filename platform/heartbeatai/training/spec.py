"""What one run trains: a trial configuration on one fold of a prepared dataset.

Plain data with no torch, so the study can build, check and ship a spec to a Ray
worker (`to_dict` is Ray's train_loop_config) without importing the training stack.
A selection metric the run never reports is refused here, before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heartbeatai.config import TrialConfig, trial_from_plain
from heartbeatai.metric_names import DEFAULT_SELECTION_METRIC, VALIDATION_METRICS
from heartbeatai.protocols import fold_protocol


@dataclass(frozen=True)
class TrainSpec:
    """A trial configuration on one fold of a prepared dataset."""

    trial: TrialConfig
    data_path: str
    fold_id: str
    classes: tuple[str, ...]
    selection_metric: str = DEFAULT_SELECTION_METRIC
    out_dir: str | None = None  # where checkpoints are staged before reporting (None: temp)
    protocol: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", fold_protocol(self.fold_id))
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.classes:
            raise ValueError("classes: a run needs at least one class")
        if self.selection_metric not in VALIDATION_METRICS:
            raise ValueError(
                f"selection_metric: {self.selection_metric!r} is not reported per epoch; "
                f"choose one of {', '.join(VALIDATION_METRICS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for Ray's train_loop_config and Tune's trial config."""
        return {
            "trial": self.trial.model_dump(mode="json"),
            "data_path": str(self.data_path),
            "fold_id": self.fold_id,
            "classes": list(self.classes),
            "selection_metric": self.selection_metric,
            "out_dir": self.out_dir,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSpec:
        fields = {k: v for k, v in raw.items() if k != "trial"}
        return cls(trial=trial_from_plain(raw["trial"]), **fields)
