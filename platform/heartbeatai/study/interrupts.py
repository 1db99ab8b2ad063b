"""SIGINT and SIGTERM stop a study at its next safe point, never in the middle of a write.

While a study runs (`catching_interrupts`), either signal only records itself. The places
where stopping loses nothing ask `check()`: before each stage of a fold, between tested
runs, between the analysis' tables, and the Tune stage runner when Tune's experiment has
stopped (Tune is asked to stop by its own SIGUSR1 handler, which saves the experiment
state first; see tune_runner.py). Nothing is marked done that did not finish, so `study
resume` continues. A second signal stops at once (KeyboardInterrupt): still safe, since
every part and the journal are written atomically, but the stage in progress is redone.

Ray Tune would otherwise catch SIGINT itself and end `fit()` as if the stage had finished;
TUNE_DISABLE_SIGINT_HANDLER keeps it from installing its handler over this one.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from heartbeatai.shell import command

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StudyInterrupted(Exception):
    """A signal stopped the study at a safe point; `study resume` continues it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention for a process ended by a signal


class _Interrupts:
    def __init__(self) -> None:
        self.received: int | None = None

    def handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.received = signum


_active: _Interrupts | None = None


@contextmanager
def catching_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM recorded, not raised, while the study runs (main thread only)."""
    global _active
    if threading.current_thread() is not threading.main_thread() or _active is not None:
        yield
        return
    interrupts = _Interrupts()
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    previous_tune = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune reads it at every fit()
    for s in _SIGNALS:
        signal.signal(s, interrupts.handle)
    _active = interrupts
    try:
        yield
    finally:
        _active = None
        for s, handler in previous.items():
            signal.signal(s, handler)
        if previous_tune is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_tune


def rearm() -> None:
    """Install the study's handlers again: `ray.init` puts a handler of its own on SIGTERM (one
    that aborts the driver), so the Tune stage runner calls this once Ray is up."""
    if _active is not None and threading.current_thread() is threading.main_thread():
        for s in _SIGNALS:
            signal.signal(s, _active.handle)


def interrupted() -> int | None:
    """The signal received so far, or None."""
    return _active.received if _active is not None else None


def check() -> None:
    """A safe point: raise StudyInterrupted when a signal arrived."""
    received = interrupted()
    if received is not None:
        raise StudyInterrupted(received)


def checking(progress):
    """`progress` that is also a safe point after each line (for a stage that only says lines)."""

    def say(message: str) -> None:
        progress(message)
        check()

    return say


def resume_hint(study_dir: os.PathLike | str) -> str:
    """The one line an interrupted study ends with."""
    return f"interrupted: `{command('study', 'resume', Path(study_dir))}` continues"
