"""Progress lines a person can read: each stamped with the time since the command started."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def elapsed_text(seconds: float) -> str:
    """`42 s`, `12 min`, `1 h 05 min`: how long, to the precision a person reads."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def stamped_printer(stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> Callable[[str], None]:
    """print(), with `[h:mm:ss]` since this printer was made before each line."""
    started = clock()

    def say(message: str) -> None:
        hours, rest = divmod(int(clock() - started), 3600)
        print(f"[{hours}:{rest // 60:02d}:{rest % 60:02d}] {message}", file=stream or sys.stdout, flush=True)

    return say
