"""Guards of a study directory: the lock against a second writer and the journal of finished stages.

The journal is what makes a study resumable by construction (DomainBed's `done` files): every
stage of every fold is marked when it finishes, a rerun skips what is marked, and because the
mark is written (atomically) only after the stage's results are in the store, a killed driver
loses nothing that finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

LOCK_NAME = ".study.lock"
JOURNAL_NAME = "journal.json"


class StudyLocked(RuntimeError):
    """Another process holds the study's writer lock."""


class StudyLock:
    """Exclusive writer lock on a study directory (filelock: released if the holder dies)."""

    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / LOCK_NAME
        self._lock = FileLock(str(self.path), timeout=0)

    def __enter__(self) -> "StudyLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise StudyLocked(
                f"study {self.path.parent} is being written by another process (lock {self.path})"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class StageJournal:
    """Finished stages per fold, e.g. {"lodo:georgia": {"search": {...}, "selection": {...}}}."""

    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / JOURNAL_NAME
        self._stages: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )

    def done(self, fold_id: str, stage: str) -> bool:
        return stage in self._stages.get(fold_id, {})

    def get(self, fold_id: str, stage: str) -> Any:
        return self._stages[fold_id][stage]

    def mark(self, fold_id: str, stage: str, record: Any = True) -> None:
        self._stages.setdefault(fold_id, {})[stage] = record
        self._write()

    def unmark(self, fold_id: str, stage: str) -> None:
        """Forget a stage (its rows were lost): the next run does it again."""
        if self._stages.get(fold_id, {}).pop(stage, None) is not None:
            self._write()

    def stages(self) -> dict[str, dict[str, Any]]:
        return {fold: dict(stages) for fold, stages in self._stages.items()}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".journal-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self._stages, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
