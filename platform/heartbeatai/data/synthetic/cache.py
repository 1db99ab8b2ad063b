"""The synthetic benchmark generated and prepared once per spec, shared by every study that names it.

Studies with the same spec find it under <storage>/_data/synthetic-<fingerprint> and a rerun
never regenerates it. Preparing writes into a temporary folder that is renamed into place, so
a killed first run leaves nothing a later one would take for finished; and a lock on the
folder makes a second study with the same spec wait for the first's, never write beside it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from heartbeatai.data.prepared import RECORDS_FILE

CACHE_DIR = "_data"
LOCK_NAME = ".generating.lock"


def prepared_synthetic(storage_root: Path, fingerprint: str, *, records: int, domains: Sequence[str],
                       shift: float, shift_kinds: Sequence[str] | None, fs: int, seconds: float, seed: int,
                       age_shortcut: float = 0.0, rate_overlap: float = 0.0, acquisition_shortcut: float = 0.0,
                       progress: Callable[[str], None] = print) -> Path:
    """The prepared dataset of the spec (write_benchmark's arguments, prepared at `fs`), made on first use.

    `fingerprint` names the spec (the study config's hash of it): the cache folder is keyed by it.
    """
    cache = Path(storage_root) / CACHE_DIR / f"synthetic-{fingerprint}"
    prepared = cache / "prepared"
    if (prepared / RECORDS_FILE).is_file():
        return prepared
    from filelock import FileLock, Timeout

    cache.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        progress(f"waiting for another study generating the same synthetic data in {cache}")
        lock.acquire()
    try:
        if not (prepared / RECORDS_FILE).is_file():  # the other study may have made it meanwhile
            _generate(cache, records, domains, shift, shift_kinds, fs, seconds, seed, age_shortcut, rate_overlap,
                      acquisition_shortcut, progress)
    finally:
        lock.release()
    return prepared


def _generate(cache: Path, records: int, domains: Sequence[str], shift: float, shift_kinds: Sequence[str] | None,
              fs: int, seconds: float, seed: int, age_shortcut: float, rate_overlap: float,
              acquisition_shortcut: float, progress: Callable[[str], None]) -> None:
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.synthetic import write_benchmark

    progress(f"generating the synthetic benchmark ({records} records, {len(domains)} domains) in {cache}")
    shutil.rmtree(cache / "raw", ignore_errors=True)  # what a killed generation left
    raw = write_benchmark(cache / "raw", records, domains=domains, shift=shift, shift_kinds=shift_kinds, fs=fs,
                          seconds=seconds, seed=seed, age_shortcut=age_shortcut, rate_overlap=rate_overlap,
                          acquisition_shortcut=acquisition_shortcut)
    tmp, prepared = cache / "prepared.tmp", cache / "prepared"
    shutil.rmtree(tmp, ignore_errors=True)
    summary = prepare([Path(raw)], tmp, PrepareSettings(fs=fs, max_seconds=seconds), progress=False)
    progress(f"prepared {summary.prepared} records ({summary.skipped} skipped) into {prepared}")
    os.replace(tmp, prepared)
