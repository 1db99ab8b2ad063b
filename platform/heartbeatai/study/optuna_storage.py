"""Where a fold's Optuna search is persisted: a journal file per fold, or an RDB the user gives.

SQLite on a network file system breaks (its fcntl locks are unreliable on NFS: optuna #815,
#820), and a cluster keeps the study folder on one. Optuna's JournalStorage appends each
change as a line to a plain file under an O_EXCL lock file (JournalFileOpenLock, NFSv3 and
later), so the default is one journal per fold, `<study>/optuna/<fold>.log`: each fold's
searches (its own and its algorithm arms') have one writer at a time, and folds never share
a file or a schema to create. A lock left by a killed writer is broken after LOCK_GRACE_S.

`optuna_storage` in the study config overrides it: an RDB URL (PostgreSQL on a cluster:
`postgresql://...`, whose schema Optuna creates on first use) shared by every fold, or
`journal:<folder>` for journals elsewhere. A line torn by a writer killed mid-append is cut
off when the fold's storage is next opened. A study begun before journals existed keeps its
`optuna.db` (SQLite) on resume. `optuna-dashboard <study>/optuna/lodo_georgia.log` opens one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

JOURNAL = "journal:"
JOURNAL_FOLDER = "optuna"
LEGACY_SQLITE = "optuna.db"
# Seconds a lock file may stand unchanged before a waiting writer breaks it (Optuna's default).
LOCK_GRACE_S = 30


def default_url(study_root: Path) -> str:
    """The study's own storage: journals under `<study>/optuna/`, or the SQLite file of a study
    that began before them (its searches resume where they stopped)."""
    legacy = study_root / LEGACY_SQLITE
    if legacy.exists():
        return f"sqlite:///{legacy}"
    return f"{JOURNAL}{study_root.resolve() / JOURNAL_FOLDER}"


def journal_path(url: str, fold_id: str) -> Path:
    """The journal file of `fold_id` under a `journal:<folder>` URL (`lodo:georgia` -> lodo_georgia.log)."""
    return Path(url[len(JOURNAL):]) / f"{re.sub(r'[^A-Za-z0-9._-]', '_', fold_id)}.log"


def drop_torn_tail(path: Path) -> int:
    """Cut a journal back to its last complete line; returns the bytes dropped.

    A writer killed inside its append leaves a line without its newline. Optuna would glue the
    next append onto it, and from then on refuse to read the file (a line that is not JSON in
    the middle). The torn line is an operation that never completed, as if the writer had died
    just before it. Called where a fold's storage is opened: the study's lock admits one driver,
    so no live writer is appending here.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as journal:
        journal.seek(-1, os.SEEK_END)
        if journal.read(1) == b"\n":
            return 0
        keep, step = size, 1 << 16
        while keep > 0:  # back to the last newline, a block at a time
            start = max(0, keep - step)
            journal.seek(start)
            block = journal.read(keep - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            keep = start
        journal.truncate(keep)
    return size - keep


def fold_storage(url: str, fold_id: str, grace_period: int | None = LOCK_GRACE_S):
    """The Optuna storage `fold_id`'s searches read and write."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url.startswith(JOURNAL):
        path = journal_path(url, fold_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(path)
        lock = JournalFileOpenLock(str(path), grace_period=grace_period)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    return optuna.storages.RDBStorage(url)
