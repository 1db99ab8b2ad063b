"""Where the real ECG samples are: one place for every test that reads real records.

In this order: the folder named by $HEARTBEATAI_ECG_SAMPLES; the larger shared set,
`../shared/data/ecg-samples` beside the repository; the small subset kept in the
repository, `tests/data/ecg-samples` (its README gives licences and provenance). All three
have the same layout, so a test names a record by its path inside the set. A record that
only the larger set holds is reached through `sample()`, which skips with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_VAR = "HEARTBEATAI_ECG_SAMPLES"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ecg-samples"
SUBSET = REPO / "tests" / "data" / "ecg-samples"


def find_samples() -> Path:
    named = os.environ.get(ENV_VAR)
    if named:
        path = Path(named).resolve()
        if not path.is_dir():
            # A named folder that is not there is a mistake: never fall back to another set.
            raise FileNotFoundError(f"${ENV_VAR} names {named}, which is not a folder")
        return path
    return SHARED if SHARED.is_dir() else SUBSET


SAMPLES = find_samples()


def describe() -> str:
    """One line for pytest's header: which set the real-record tests read."""
    if os.environ.get(ENV_VAR):
        origin = f"${ENV_VAR}"
    else:
        origin = "the shared set beside the repository" if SAMPLES == SHARED else "the in-repository subset"
    return f"real ECG samples: {SAMPLES} ({origin})"


def sample(relative: str) -> Path:
    """The path of a file of the sample set; skips the test when this set lacks it."""
    path = SAMPLES / relative
    if not path.exists():
        pytest.skip(
            f"needs {relative}, which the sample set at {SAMPLES} lacks: the shared set "
            f"../shared/data/ecg-samples beside the repository has it (or set ${ENV_VAR})"
        )
    return path
