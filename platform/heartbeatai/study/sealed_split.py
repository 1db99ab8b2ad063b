"""The no-peeking guard: a fold's test records stay sealed until its selection is recorded.

Search and selection only ever see a fold's train and val ids (the training path takes a
fold id and reads only those splits). The test ids live here and come out through
`release_test`, which refuses while the fold's selection is not in the journal, so the
held-out domain cannot influence which model is chosen (DESIGN.md, Study).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from heartbeatai.data.folds import fold_records
from heartbeatai.study.lock import StageJournal

SELECTION_STAGE = "selection"


class PeekingError(RuntimeError):
    """Test records were asked for before the fold's model selection was recorded."""


@dataclass(frozen=True)
class SealedSplit:
    fold_id: str
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    _test_ids: tuple[str, ...] = field(repr=False)

    @classmethod
    def from_folds(cls, folds: pd.DataFrame, fold_id: str) -> "SealedSplit":
        ids = fold_records(folds, fold_id)
        return cls(fold_id, tuple(ids["train"]), tuple(ids["val"]), tuple(ids["test"]))

    @property
    def n_test(self) -> int:
        """How many records are sealed (for plans and progress; says nothing of their content)."""
        return len(self._test_ids)

    def release_test(self, journal: StageJournal) -> list[str]:
        if not journal.done(self.fold_id, SELECTION_STAGE):
            raise PeekingError(f"{self.fold_id}: test records requested before the model selection was recorded")
        return list(self._test_ids)
